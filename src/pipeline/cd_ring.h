/*
 * cd_ring.h - the POSIX shared-memory block ring (DESIGN.md §3).
 *
 * Block payloads are recv()'d from peers straight into this ring; workers read
 * the same bytes through the mapping they inherit at fork(). The segment is
 *
 *     [ header page: cd_ring_shm (magic, layout version, sizes, creator pid,
 *       64-byte per-worker slots) ][ data: `size` bytes ]
 *
 * and the data part is mapped TWICE back to back, so any range of up to
 * `size` bytes starting anywhere in the ring is virtually contiguous: a work
 * unit that wraps around is still one pointer + length for the preprocessor,
 * the writer and the parsers.
 *
 * Positions are absolute 64-bit byte counters (never wrap in practice); the
 * byte at position p is at cd_ring_ptr(r, p) = data + p % size. The ring is a
 * FIFO: the controller produces at `head` and releases from `tail` (the
 * pipeline advances the tail only over units every consumer has acked).
 *
 * Name: "/conduitd-<16 hex of sha256(realpath(datadir))>", so two daemons on
 * different datadirs never collide and a restart finds the previous segment.
 * cd_ring_create() removes a stale segment left by a crashed run (its creator
 * pid is dead) and refuses (EBUSY) if the creator is still alive.
 *
 * Process rules: create in the controller before forking any worker. Children
 * inherit the mapping and only read data / write their own slot; they must not
 * call cd_ring_destroy() (use cd_ring_forget_in_child() if they must drop it).
 */
#ifndef CD_RING_H
#define CD_RING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cd_err.h" /* CD_WARN_UNUSED */

#define CD_RING_MAGIC          0x434452494e473031ull /* "CDRING01" */
#define CD_RING_LAYOUT_VERSION 1
#define CD_RING_HDR_SIZE       4096
#define CD_RING_MAX_SLOTS      48
#define CD_RING_NAME_MAX       64

/* One 64-byte slot per worker (false-sharing free). Written by its owner. */
typedef struct cd_ring_slot {
    int32_t pid;   /* 0 = free */
    uint32_t kind; /* cd_wk_kind */
    uint64_t units_done;
    uint64_t bytes_done;
    uint64_t last_block_id;
    uint8_t pad[32];
} cd_ring_slot;

typedef struct cd_ring_shm {
    uint64_t magic;          /* CD_RING_MAGIC */
    uint32_t layout_version; /* CD_RING_LAYOUT_VERSION */
    int32_t creator_pid;
    uint64_t total_size; /* header + data */
    uint64_t data_size;  /* ring capacity in bytes */
    uint8_t pad0[32];
    /* written by the controller only; informational for tools */
    volatile uint64_t head;
    volatile uint64_t tail;
    uint8_t pad1[48];
    cd_ring_slot slot[CD_RING_MAX_SLOTS];
} cd_ring_shm;

typedef struct cd_ring {
    char name[CD_RING_NAME_MAX];
    int fd;
    cd_ring_shm *hdr; /* mapped header page */
    uint8_t *data;    /* 2 * size bytes of virtual space, double-mapped */
    uint64_t size;
    uint64_t head; /* next byte to produce */
    uint64_t tail; /* oldest byte still in use */
    int owner;     /* 1 in the creating process */
} cd_ring;

/*
 * Computes the segment name for a datadir into out (size CD_RING_NAME_MAX).
 * Returns 0, or -1 with errno set (realpath failure).
 */
int cd_ring_name_for(const char *datadir, char out[CD_RING_NAME_MAX]) CD_WARN_UNUSED;

/*
 * Creates (or replaces a stale) segment of `size` data bytes; size is rounded
 * up to the page size. Returns: 0 with *r filled; -1 with errno (EBUSY: a live
 * process owns the name; EINVAL: size 0; others from shm_open/ftruncate/mmap).
 */
int cd_ring_create(cd_ring *r, const char *name, uint64_t size) CD_WARN_UNUSED;

/* The directory where glibc's shm_open() puts segments on Linux: the ring's
 * memory is charged to that tmpfs. */
#define CD_RING_SHM_DIR "/dev/shm"

/*
 * Checks, before the segment is created, that a ring of `size` data bytes
 * fits in the free space of CD_RING_SHM_DIR. ftruncate() on tmpfs succeeds
 * for any size (the file is sparse): a ring larger than the space fails only
 * when a page is first touched, as SIGBUS or EFAULT in recv() ("Bad
 * address"), long after start. A segment already there under `name` (left
 * by a crashed run; cd_ring_create replaces it) counts as free.
 * Out: *need = bytes the segment takes; *avail = bytes free for it.
 * Returns: 0 if it fits; -1 with errno ENOSPC if not; -1 with errno from
 * statvfs() if the directory cannot be examined.
 */
int cd_ring_check_space(const char *name, uint64_t size, uint64_t *need,
                        uint64_t *avail) CD_WARN_UNUSED;

/* Unmaps and (in the creating process) unlinks the segment. Accepts a zeroed
 * struct. */
void cd_ring_destroy(cd_ring *r);

/* Unmaps without unlinking (a child that does not need the ring). */
void cd_ring_forget_in_child(cd_ring *r);

/* Removes a segment left by a dead creator. Returns: 1 removed, 0 nothing to
 * do, -1 with errno (EBUSY if its creator is alive). */
int cd_ring_cleanup_stale(const char *name) CD_WARN_UNUSED;

/* Returns: the address of stream position pos (ring memory: valid while the
 * ring is mapped); cd_ring_used/free: bytes in use / free. */
static inline uint8_t *cd_ring_ptr(const cd_ring *r, uint64_t pos)
{
    return r->data + (pos % r->size);
}

static inline uint64_t cd_ring_used(const cd_ring *r)
{
    return r->head - r->tail;
}

static inline uint64_t cd_ring_free(const cd_ring *r)
{
    return r->size - (r->head - r->tail);
}

/* Returns: the contiguous writable space at head (== cd_ring_free, thanks to
 * the double mapping). Out: *ptr, its address (ring memory). */
uint64_t cd_ring_writable(cd_ring *r, uint8_t **ptr);

/* Marks n bytes at head as written. n must be <= cd_ring_free(). */
void cd_ring_produce(cd_ring *r, uint64_t n);

/* Takes back the newest n produced bytes (a block cancelled before any of
 * its tail was handed to a consumer). n must be <= cd_ring_used(). */
void cd_ring_unproduce(cd_ring *r, uint64_t n);

/* Releases the oldest n bytes. n must be <= cd_ring_used(). */
void cd_ring_release(cd_ring *r, uint64_t n);

#endif /* CD_RING_H */
