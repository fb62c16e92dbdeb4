/*
 * cd_ring.c - POSIX shared-memory ring with a double mapping.
 *
 * Why it exists: block bytes must go from the socket to every consumer without
 * a heap copy and without a whole-block buffer (DESIGN.md §3). The segment is
 * created by the controller before fork(), so workers share it for free.
 *
 * The double mapping: reserve 2*size of address space PROT_NONE, then map the
 * data part of the shm object at both halves with MAP_FIXED. Writing byte i
 * through either half changes the same page, so data[size - k .. size + j) is
 * a contiguous view of the wrap-around.
 */
#include "cd_ring.h"

#include "cd_hash.h"
#include "cd_log.h"
#include "cd_util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

_Static_assert(sizeof(cd_ring_slot) == 64, "ring slot must be one cache line");
_Static_assert(sizeof(cd_ring_shm) <= CD_RING_HDR_SIZE, "ring header exceeds its page");

int cd_ring_name_for(const char *datadir, char out[CD_RING_NAME_MAX])
{
    char real[PATH_MAX];
    if (!realpath(datadir, real))
        return -1;
    uint8_t h[CD_HASH_LEN];
    cd_sha256(h, real, strlen(real));
    char hex[17];
    cd_hex_encode(hex, h, 8);
    snprintf(out, CD_RING_NAME_MAX, "/conduitd-%s", hex);
    return 0;
}

static int pid_alive(pid_t pid)
{
    if (pid <= 0)
        return 0;
    return kill(pid, 0) == 0 || errno == EPERM;
}

int cd_ring_cleanup_stale(const char *name)
{
    int fd = shm_open(name, O_RDONLY, 0);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    struct stat st;
    pid_t creator = 0;
    if (fstat(fd, &st) == 0 && (size_t)st.st_size >= sizeof(cd_ring_shm)) {
        cd_ring_shm *h = mmap(NULL, CD_RING_HDR_SIZE, PROT_READ, MAP_SHARED, fd, 0);
        if (h != MAP_FAILED) {
            if (h->magic == CD_RING_MAGIC)
                creator = h->creator_pid;
            munmap(h, CD_RING_HDR_SIZE);
        }
    }
    close(fd);
    if (creator != getpid() && pid_alive(creator)) {
        errno = EBUSY;
        return -1;
    }
    if (shm_unlink(name) != 0 && errno != ENOENT)
        return -1;
    cd_log_warn("ring %s: removed a segment left by dead process %d", name, (int)creator);
    return 1;
}

int cd_ring_check_space(const char *name, uint64_t size, uint64_t *need, uint64_t *avail)
{
    uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE);
    *need = CD_RING_HDR_SIZE + (size + pg - 1) / pg * pg;
    *avail = 0;
    struct statvfs vs;
    if (statvfs(CD_RING_SHM_DIR, &vs) != 0)
        return -1;
    *avail = (uint64_t)vs.f_bavail * (uint64_t)vs.f_frsize;
    int fd = shm_open(name, O_RDONLY, 0);
    if (fd >= 0) {
        struct stat st;
        if (fstat(fd, &st) == 0)
            *avail += (uint64_t)st.st_blocks * 512u; /* pages it really holds */
        close(fd);
    }
    if (*need > *avail) {
        errno = ENOSPC;
        return -1;
    }
    return 0;
}

int cd_ring_create(cd_ring *r, const char *name, uint64_t size)
{
    memset(r, 0, sizeof(*r));
    r->fd = -1;
    long pg = sysconf(_SC_PAGESIZE);
    if (size == 0 || strlen(name) >= CD_RING_NAME_MAX) {
        errno = EINVAL;
        return -1;
    }
    size = (size + (uint64_t)pg - 1) / (uint64_t)pg * (uint64_t)pg;
    if (cd_ring_cleanup_stale(name) < 0) {
        cd_log_error("ring %s: in use by a running process (%s)", name, strerror(errno));
        return -1;
    }
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        cd_log_error("ring %s: shm_open: %s", name, strerror(errno));
        return -1;
    }
    int saved;
    uint64_t total = CD_RING_HDR_SIZE + size;
    if (ftruncate(fd, (off_t)total) != 0) {
        saved = errno;
        cd_log_error("ring %s: ftruncate(%llu): %s", name, (unsigned long long)total,
                     strerror(errno));
        goto fail_fd;
    }
    cd_ring_shm *hdr = mmap(NULL, CD_RING_HDR_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (hdr == MAP_FAILED) {
        saved = errno;
        goto fail_fd;
    }
    uint8_t *base =
        mmap(NULL, 2 * size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
        saved = errno;
        munmap(hdr, CD_RING_HDR_SIZE);
        goto fail_fd;
    }
    for (int i = 0; i < 2; i++) {
        void *p = mmap(base + (size_t)i * size, size, PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_FIXED, fd, CD_RING_HDR_SIZE);
        if (p == MAP_FAILED) {
            saved = errno;
            cd_log_error("ring %s: mmap half %d: %s", name, i, strerror(errno));
            munmap(base, 2 * size);
            munmap(hdr, CD_RING_HDR_SIZE);
            goto fail_fd;
        }
    }
    memset(hdr, 0, CD_RING_HDR_SIZE);
    hdr->layout_version = CD_RING_LAYOUT_VERSION;
    hdr->creator_pid = (int32_t)getpid();
    hdr->total_size = total;
    hdr->data_size = size;
    __atomic_store_n(&hdr->magic, CD_RING_MAGIC, __ATOMIC_RELEASE);

    snprintf(r->name, sizeof(r->name), "%s", name);
    r->fd = fd;
    r->hdr = hdr;
    r->data = base;
    r->size = size;
    r->owner = 1;
    cd_log_info("ring %s: %llu bytes", name, (unsigned long long)size);
    return 0;

fail_fd:
    close(fd);
    shm_unlink(name);
    errno = saved;
    return -1;
}

void cd_ring_forget_in_child(cd_ring *r)
{
    if (r->data)
        munmap(r->data, 2 * r->size);
    if (r->hdr)
        munmap(r->hdr, CD_RING_HDR_SIZE);
    if (r->fd >= 0)
        close(r->fd);
    r->data = NULL;
    r->hdr = NULL;
    r->fd = -1;
    r->owner = 0;
}

void cd_ring_destroy(cd_ring *r)
{
    int owner = r->owner;
    char name[CD_RING_NAME_MAX];
    memcpy(name, r->name, sizeof(name));
    if (r->data == NULL && r->hdr == NULL)
        return;
    cd_ring_forget_in_child(r);
    if (owner && name[0])
        shm_unlink(name);
}

uint64_t cd_ring_writable(cd_ring *r, uint8_t **ptr)
{
    *ptr = cd_ring_ptr(r, r->head);
    return cd_ring_free(r);
}

void cd_ring_produce(cd_ring *r, uint64_t n)
{
    cd_assert(n <= cd_ring_free(r));
    r->head += n;
    r->hdr->head = r->head;
}

void cd_ring_unproduce(cd_ring *r, uint64_t n)
{
    cd_assert(n <= cd_ring_used(r));
    r->head -= n;
    r->hdr->head = r->head;
}

void cd_ring_release(cd_ring *r, uint64_t n)
{
    cd_assert(n <= cd_ring_used(r));
    r->tail += n;
    r->hdr->tail = r->tail;
}
