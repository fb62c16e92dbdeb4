/*
 * cd_hashset.h - a set of 32-byte hashes (txids, block hashes): open
 * addressing with linear probing in a power-of-two table that doubles when
 * half full.
 *
 * Keys are the output of SHA-256 (uniform), so the slot comes from their
 * first 8 bytes. The set copies keys in; it allocates with cd_xcalloc (small
 * control structures: a failure aborts, see cd_util.h). Not thread-safe; one
 * owner.
 *
 * A zeroed cd_hashset (`cd_hashset s = {0};` or calloc) is an empty set;
 * cd_hashset_free releases its memory and leaves it empty again.
 */
#ifndef CD_HASHSET_H
#define CD_HASHSET_H

#include <stddef.h>
#include <stdint.h>

typedef struct cd_hashset {
    uint8_t (*keys)[32]; /* cap keys */
    uint8_t *used;       /* cap flags */
    size_t cap;          /* 0 or a power of two */
    size_t n;            /* keys held */
} cd_hashset;

/* Adds key (copied). Returns 1 if it was added, 0 if it was there already. */
int cd_hashset_add(cd_hashset *s, const uint8_t key[32]);

/* Returns 1 if key is in the set, else 0. */
int cd_hashset_has(const cd_hashset *s, const uint8_t key[32]);

/* Number of keys held. */
size_t cd_hashset_count(const cd_hashset *s);

/* Removes every key; keeps the memory for reuse. */
void cd_hashset_clear(cd_hashset *s);

/* Releases the memory; the set is empty (and usable) afterwards. Accepts a
 * zeroed set. */
void cd_hashset_free(cd_hashset *s);

#endif /* CD_HASHSET_H */
