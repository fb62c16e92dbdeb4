/*
 * cd_hashset.c - a set of 32-byte hashes (see cd_hashset.h): the block
 * download's "stored" set and the mempool's recently requested txids.
 */
#include "cd_hashset.h"

#include "cd_util.h"

#include <stdlib.h>
#include <string.h>

#define HS_FIRST_CAP 1024

static size_t slot(const uint8_t key[32], size_t cap)
{
    uint64_t v;
    memcpy(&v, key, 8);
    return (size_t)(v * 0x9E3779B97F4A7C15ull >> 7) & (cap - 1);
}

/* Inserts into a table known to have room and not to hold key. */
static void put(cd_hashset *s, const uint8_t key[32])
{
    size_t i = slot(key, s->cap);
    while (s->used[i])
        i = (i + 1) & (s->cap - 1);
    s->used[i] = 1;
    memcpy(s->keys[i], key, 32);
    s->n++;
}

static void grow(cd_hashset *s)
{
    cd_hashset g = {0};
    g.cap = s->cap ? s->cap * 2 : HS_FIRST_CAP;
    g.keys = cd_xcalloc(g.cap, 32);
    g.used = cd_xcalloc(g.cap, 1);
    for (size_t i = 0; i < s->cap; i++)
        if (s->used[i])
            put(&g, s->keys[i]);
    free(s->keys);
    free(s->used);
    *s = g;
}

int cd_hashset_has(const cd_hashset *s, const uint8_t key[32])
{
    if (!s->cap)
        return 0;
    for (size_t i = slot(key, s->cap);; i = (i + 1) & (s->cap - 1)) {
        if (!s->used[i])
            return 0;
        if (memcmp(s->keys[i], key, 32) == 0)
            return 1;
    }
}

int cd_hashset_add(cd_hashset *s, const uint8_t key[32])
{
    if (cd_hashset_has(s, key))
        return 0;
    if ((s->n + 1) * 2 > s->cap)
        grow(s);
    put(s, key);
    return 1;
}

size_t cd_hashset_count(const cd_hashset *s)
{
    return s->n;
}

void cd_hashset_clear(cd_hashset *s)
{
    if (s->cap)
        memset(s->used, 0, s->cap);
    s->n = 0;
}

void cd_hashset_free(cd_hashset *s)
{
    free(s->keys);
    free(s->used);
    memset(s, 0, sizeof(*s));
}
