/*
 * cd_ipc.c - blocking send/receive of controller <-> worker messages.
 *
 * Workers are single-purpose processes, so plain blocking reads and writes on
 * their socketpair end are the simplest correct choice; the controller side
 * uses libevent bufferevents instead (cd_pipe_workers.c) so it never blocks.
 */
#include "cd_ipc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static int write_all_iov(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        size_t left = (size_t)w;
        while (n > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

int cd_ipc_send(int fd, uint16_t type, const void *payload, uint32_t len, const void *extra,
                uint32_t extra_len)
{
    cd_ipc_hdr h = {.version = CD_IPC_VERSION, .type = type, .len = len + extra_len};
    struct iovec iov[3];
    int n = 0;
    iov[n].iov_base = &h;
    iov[n++].iov_len = sizeof(h);
    if (len) {
        iov[n].iov_base = (void *)(uintptr_t)payload;
        iov[n++].iov_len = len;
    }
    if (extra_len) {
        iov[n].iov_base = (void *)(uintptr_t)extra;
        iov[n++].iov_len = extra_len;
    }
    return write_all_iov(fd, iov, n);
}

/* Returns bytes read (== n), 0 on EOF at the first byte, -1 on error/partial. */
static ssize_t read_full(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (uint8_t *)buf + got, n - got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0) {
            if (got == 0)
                return 0;
            errno = EIO;
            return -1;
        }
        got += (size_t)r;
    }
    return (ssize_t)got;
}

int cd_ipc_recv(int fd, cd_ipc_hdr *hdr, uint8_t **buf, size_t *cap)
{
    ssize_t r = read_full(fd, hdr, sizeof(*hdr));
    if (r <= 0)
        return (int)r;
    if (hdr->version != CD_IPC_VERSION || hdr->len > CD_IPC_MAX_PAYLOAD) {
        errno = EPROTO;
        return -1;
    }
    if (hdr->len > *cap || *buf == NULL) {
        size_t ncap = hdr->len < 256 ? 256 : hdr->len;
        uint8_t *nb = realloc(*buf, ncap);
        if (!nb)
            return -1;
        *buf = nb;
        *cap = ncap;
    }
    if (hdr->len == 0)
        return 1;
    r = read_full(fd, *buf, hdr->len);
    if (r == 0) {
        errno = EIO;
        return -1;
    }
    return r < 0 ? -1 : 1;
}

const char *cd_ipc_type_name(uint16_t type)
{
    switch (type) {
    case CD_IPC_HELLO:
        return "HELLO";
    case CD_IPC_BLOCK_BEGIN:
        return "BLOCK_BEGIN";
    case CD_IPC_UNIT:
        return "UNIT";
    case CD_IPC_BLOCK_END:
        return "BLOCK_END";
    case CD_IPC_BLOCK_ABORT:
        return "BLOCK_ABORT";
    case CD_IPC_UNIT_ACK:
        return "UNIT_ACK";
    case CD_IPC_BLOCK_DONE:
        return "BLOCK_DONE";
    case CD_IPC_BLOCK_DELETE:
        return "BLOCK_DELETE";
    case CD_IPC_SHUTDOWN:
        return "SHUTDOWN";
    case CD_IPC_BLOCK_STORED:
        return "BLOCK_STORED";
    case CD_IPC_STALL:
        return "STALL";
    case CD_IPC_PG_COMMIT:
        return "PG_COMMIT";
    default:
        return "?";
    }
}

const char *cd_wk_kind_name(uint32_t kind)
{
    switch (kind) {
    case CD_WK_WRITER:
        return "writer";
    case CD_WK_MERKLE:
        return "merkle";
    case CD_WK_PARSER:
        return "parser";
    default:
        return "?";
    }
}
