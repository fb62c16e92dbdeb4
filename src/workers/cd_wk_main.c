/*
 * cd_wk_main.c - the worker main loop: messages in, hooks, replies out.
 *
 * Why it exists: every worker kind needs the same framing, version check,
 * ack discipline and exit-code policy; keeping it in one place means the
 * writer, merkle and parser workers only implement what they do with a unit.
 */
#include "cd_wk_main.h"

#include "cd_log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

void cd_wk_maybe_crash(cd_wk_ctx *c, uint64_t units_done)
{
    const char *spec = getenv("CD_WK_CRASH");
    if (!spec || !c->cfg || !c->cfg->datadir)
        return;
    const char *name = cd_wk_kind_name(c->kind);
    size_t nl = strlen(name);
    if (strncmp(spec, name, nl) != 0 || spec[nl] != ':')
        return;
    if (strtoull(spec + nl + 1, NULL, 10) != units_done)
        return;
    char path[4096];
    snprintf(path, sizeof(path), "%s/crashed.%s", c->cfg->datadir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return; /* already crashed once */
    close(fd);
    cd_log_warn("test hook CD_WK_CRASH=%s: killing myself", spec);
    raise(SIGKILL);
}

/* ---------------- a store that cannot be written (issue 11, F6) ---------------- */

/* Below this much free space, LMDB's EIO (a short write) counts as a full
 * disk: a chunk is 4 MiB, a page run a few more. */
#define CD_WK_LOW_SPACE (16u << 20)

/* Errors worth waiting for: space, quota, LMDB's map, I/O. */
static int wait_worthy(int rc)
{
    return rc == ENOSPC || rc == EDQUOT || rc == EIO || rc == EFBIG || rc == CD_BS_MAPFULL;
}

static uint64_t free_bytes(const char *path)
{
    struct statvfs sv;
    if (statvfs(path, &sv) != 0)
        return 0;
    return (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
}

static void send_stall(cd_wk_ctx *c, const char *path, int stalled, int rc, uint64_t avail,
                       int full)
{
    cd_ipc_stall m;
    memset(&m, 0, sizeof(m));
    m.stalled = (uint32_t)stalled;
    m.err = rc;
    m.free_bytes = avail;
    m.disk_full = (uint32_t)full;
    snprintf(m.path, sizeof(m.path), "%s", path);
    /* best effort: a controller that is gone is noticed by the wait */
    CD_IGNORE(cd_ipc_send(c->fd, CD_IPC_STALL, &m, sizeof(m), NULL, 0));
}

int cd_wk_store_wait(cd_wk_ctx *c, const char *path, int rc)
{
    if (!wait_worthy(rc))
        return rc;
    const char *name = cd_wk_kind_name(c->kind);
    uint64_t avail = free_bytes(path);
    /* LMDB reports a short write (the filesystem filled mid-page) as EIO:
     * with (almost) no space left that is a full disk too */
    int full = rc != EIO || avail < CD_WK_LOW_SPACE;
    if (!c->stalled) {
        c->stalled = 1;
        c->stall_tries = 0;
        cd_log_error("%s: %s: cannot write %s: %s; %llu bytes (%.1f MiB) free on its "
                     "filesystem. Block downloads pause; writing resumes by itself once space "
                     "is freed",
                     name, full ? "disk full" : "I/O error", path, cd_strerror(rc),
                     (unsigned long long)avail, (double)avail / (1024.0 * 1024.0));
        send_stall(c, path, 1, rc, avail, full);
    } else {
        cd_log_debug("%s: %s still not writable (%s, %llu bytes free, attempt %u)", name, path,
                     cd_strerror(rc), (unsigned long long)avail, c->stall_tries);
    }
    unsigned shift = c->stall_tries < 4 ? c->stall_tries : 4;
    int ms = 500 << shift; /* 0.5 s doubling up to 8 s */
    c->stall_tries++;
    /* sleep, but leave at once if the controller is gone (its messages
     * wait in the socket meanwhile: only a hang-up is looked at) */
    struct pollfd pfd = {.fd = c->fd, .events = POLLRDHUP};
    int r = poll(&pfd, 1, ms);
    if (r > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
        cd_log_info("%s: the controller is gone; exiting while %s is not writable", name, path);
        exit(CD_EXIT_OK);
    }
    return 0;
}

void cd_wk_store_ok(cd_wk_ctx *c, const char *path)
{
    if (!c->stalled)
        return;
    cd_log_info("%s: %s is writable again after %u attempt(s); resuming", cd_wk_kind_name(c->kind),
                path, c->stall_tries);
    c->stalled = 0;
    c->stall_tries = 0;
    send_stall(c, path, 0, 0, free_bytes(path), 0);
}

static CD_NORETURN void wk_exit(cd_wk_ctx *c, const cd_wk_ops *ops, uint8_t *buf, int code)
{
    if (ops->fini)
        ops->fini(c);
    free(buf);
    exit(code);
}

static int need(const cd_ipc_hdr *h, size_t sz)
{
    if (h->len < sz) {
        cd_log_error("ipc: %s message of %u bytes, expected %zu", cd_ipc_type_name(h->type), h->len,
                     sz);
        return -1;
    }
    return 0;
}

int cd_wk_send_ack(cd_wk_ctx *c, uint64_t block_id, uint32_t unit_no, uint32_t status)
{
    cd_ipc_unit_ack ack = {.block_id = block_id, .unit_no = unit_no, .status = status};
    return cd_ipc_send(c->fd, CD_IPC_UNIT_ACK, &ack, sizeof(ack), NULL, 0);
}

/* 1 if a message (or EOF) is waiting on fd: the loop would not block. */
static int input_ready(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int r;
    while ((r = poll(&pfd, 1, 0)) < 0 && errno == EINTR)
        ;
    return r != 0; /* an error counts as ready: the read reports it */
}

void cd_wk_run(cd_wk_ctx *c, const cd_wk_ops *ops)
{
    uint8_t *buf = NULL;
    size_t cap = 0;
    if (ops->init) {
        int rc = ops->init(c);
        if (rc != 0) {
            cd_log_error("%s worker: init failed (exit %d)", ops->name, rc);
            free(buf);
            exit(rc);
        }
    }
    cd_ipc_hello hello = {.kind = c->kind, .index = c->index, .pid = (int32_t)getpid()};
    if (cd_ipc_send(c->fd, CD_IPC_HELLO, &hello, sizeof(hello), NULL, 0) != 0)
        wk_exit(c, ops, buf, CD_EXIT_OK);
    uint64_t units_done = 0;
    for (;;) {
        cd_ipc_hdr h;
        /* deferred units are settled when the queue runs dry, so a unit
         * never waits for a message that has not been sent yet */
        if (ops->idle && !input_ready(c->fd) && ops->idle(c) < 0)
            wk_exit(c, ops, buf, CD_EXIT_FAILURE);
        int r = cd_ipc_recv(c->fd, &h, &buf, &cap);
        if (r == 0)
            wk_exit(c, ops, buf, CD_EXIT_OK); /* controller gone */
        if (r < 0) {
            cd_log_error("%s worker: channel read: %s", ops->name, strerror(errno));
            wk_exit(c, ops, buf, CD_EXIT_FAILURE);
        }
        int rc = 0;
        switch (h.type) {
        case CD_IPC_BLOCK_BEGIN:
            if (need(&h, sizeof(cd_ipc_block_begin)))
                wk_exit(c, ops, buf, CD_EXIT_FAILURE);
            if (ops->begin)
                rc = ops->begin(c, (const cd_ipc_block_begin *)buf);
            break;
        case CD_IPC_UNIT: {
            if (need(&h, sizeof(cd_ipc_unit)))
                wk_exit(c, ops, buf, CD_EXIT_FAILURE);
            const cd_ipc_unit *u = (const cd_ipc_unit *)buf;
            if (h.len != sizeof(*u) + (size_t)u->tx_count * 4 || u->len > c->ring_size) {
                cd_log_error("%s worker: bad UNIT (len %u, %u offsets)", ops->name, h.len,
                             u->tx_count);
                wk_exit(c, ops, buf, CD_EXIT_FAILURE);
            }
            int st = ops->unit ? ops->unit(c, u, (const uint32_t *)(buf + sizeof(*u))) : 0;
            if (st < 0) {
                rc = -1;
                break;
            }
            units_done++;
            if (st == CD_WK_DEFERRED) {
                cd_wk_maybe_crash(c, units_done); /* a crash with the unit held */
                break;
            }
            cd_wk_maybe_crash(c, units_done);
            cd_ipc_unit_ack ack = {
                .block_id = u->block_id, .unit_no = u->unit_no, .status = (uint32_t)st};
            if (cd_ipc_send(c->fd, CD_IPC_UNIT_ACK, &ack, sizeof(ack), NULL, 0) != 0)
                wk_exit(c, ops, buf, CD_EXIT_OK);
            break;
        }
        case CD_IPC_BLOCK_END: {
            if (need(&h, sizeof(cd_ipc_block_ref)))
                wk_exit(c, ops, buf, CD_EXIT_FAILURE);
            cd_ipc_block_done done;
            memset(&done, 0, sizeof(done));
            const cd_ipc_block_ref *ref = (const cd_ipc_block_ref *)buf;
            done.block_id = ref->block_id;
            done.kind = c->kind;
            int send = ops->end ? ops->end(c, ref, &done) : 0;
            if (send < 0) {
                rc = -1;
                break;
            }
            if (send > 0 &&
                cd_ipc_send(c->fd, CD_IPC_BLOCK_DONE, &done, sizeof(done), NULL, 0) != 0)
                wk_exit(c, ops, buf, CD_EXIT_OK);
            break;
        }
        case CD_IPC_BLOCK_ABORT:
            if (need(&h, sizeof(cd_ipc_block_ref)))
                wk_exit(c, ops, buf, CD_EXIT_FAILURE);
            /* held units first: they are handled as if acked before */
            if (ops->idle && ops->idle(c) < 0)
                wk_exit(c, ops, buf, CD_EXIT_FAILURE);
            if (ops->abort)
                ops->abort(c, (const cd_ipc_block_ref *)buf);
            break;
        case CD_IPC_BLOCK_DELETE:
            if (need(&h, sizeof(cd_ipc_block_ref)))
                wk_exit(c, ops, buf, CD_EXIT_FAILURE);
            if (ops->idle && ops->idle(c) < 0)
                wk_exit(c, ops, buf, CD_EXIT_FAILURE);
            if (ops->del)
                rc = ops->del(c, (const cd_ipc_block_ref *)buf);
            if (rc > 0) {
                cd_ipc_block_done done;
                memset(&done, 0, sizeof(done));
                done.block_id = ((const cd_ipc_block_ref *)buf)->block_id;
                done.kind = c->kind;
                if (cd_ipc_send(c->fd, CD_IPC_BLOCK_DONE, &done, sizeof(done), NULL, 0) != 0)
                    wk_exit(c, ops, buf, CD_EXIT_OK);
                rc = 0;
            }
            break;
        case CD_IPC_BLOCK_STORED: {
            if (need(&h, sizeof(cd_ipc_block_ref)))
                wk_exit(c, ops, buf, CD_EXIT_FAILURE);
            if (!ops->stored) {
                cd_log_error("%s worker: unexpected BLOCK_STORED", ops->name);
                wk_exit(c, ops, buf, CD_EXIT_FAILURE);
            }
            cd_ipc_block_done done;
            memset(&done, 0, sizeof(done));
            const cd_ipc_block_ref *ref = (const cd_ipc_block_ref *)buf;
            done.block_id = ref->block_id;
            done.kind = c->kind;
            int send = ops->stored(c, ref, &done);
            if (send < 0) {
                rc = -1;
                break;
            }
            if (send > 0 &&
                cd_ipc_send(c->fd, CD_IPC_BLOCK_DONE, &done, sizeof(done), NULL, 0) != 0)
                wk_exit(c, ops, buf, CD_EXIT_OK);
            break;
        }
        case CD_IPC_SHUTDOWN:
            if (ops->idle)
                ops->idle(c);
            wk_exit(c, ops, buf, CD_EXIT_OK);
        default:
            cd_log_error("%s worker: unexpected message type %u", ops->name, h.type);
            wk_exit(c, ops, buf, CD_EXIT_FAILURE);
        }
        if (rc < 0)
            wk_exit(c, ops, buf, CD_EXIT_FAILURE);
    }
}
