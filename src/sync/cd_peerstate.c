/*
 * cd_peerstate.c - the peers' reconnect schedules in <datadir>/peers.state
 * (see cd_peerstate.h).
 */
#include "cd_peerstate.h"

#include "cd_escape.h"
#include "cd_log.h"
#include "cd_util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PS_MAX 256

typedef struct ps_entry {
    char *addr;
    cp2p_penalty pen;
} ps_entry;

struct cd_peerstate {
    char *path;
    ps_entry e[PS_MAX];
    size_t n;
    int write_failed;
};

static cp2p_reason reason_by_name(const char *s)
{
    for (int r = 0; r <= CP2P_R_MISBEHAVED; r++)
        if (strcmp(cp2p_reason_str((cp2p_reason)r), s) == 0)
            return (cp2p_reason)r;
    return CP2P_R_NONE;
}

static ps_entry *find(const cd_peerstate *ps, const char *addr)
{
    for (size_t i = 0; i < ps->n; i++)
        if (strcmp(ps->e[i].addr, addr) == 0)
            return (ps_entry *)&ps->e[i];
    return NULL;
}

cd_peerstate *cd_peerstate_open(const char *datadir)
{
    cd_peerstate *ps = cd_xcalloc(1, sizeof(*ps));
    size_t n = strlen(datadir) + sizeof("/peers.state");
    ps->path = cd_xmalloc(n);
    snprintf(ps->path, n, "%s/peers.state", datadir);
    FILE *f = fopen(ps->path, "r");
    if (!f) {
        if (errno != ENOENT)
            cd_log_warn("%s: %s (peer back-off and bans start afresh)", ps->path, strerror(errno));
        return ps;
    }
    char line[1024];
    unsigned lineno = 0;
    while (fgets(line, sizeof(line), f) && ps->n < PS_MAX) {
        char addr[512], reason[64];
        unsigned fails, bans;
        long long until;
        int banned;
        lineno++;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (sscanf(line, "%511s failures=%u bans=%u until=%lld banned=%d reason=%63s", addr, &fails,
                   &bans, &until, &banned, reason) != 6) {
            cd_log_warn("%s:%u: unreadable line ignored", ps->path, lineno);
            continue;
        }
        ps_entry *e = &ps->e[ps->n++];
        e->addr = cd_xstrdup(addr);
        e->pen.failures = fails;
        e->pen.bans = bans;
        e->pen.until = until;
        e->pen.banned = banned != 0;
        e->pen.reason = reason_by_name(reason);
    }
    fclose(f);
    return ps;
}

void cd_peerstate_free(cd_peerstate *ps)
{
    if (!ps)
        return;
    for (size_t i = 0; i < ps->n; i++)
        free(ps->e[i].addr);
    free(ps->path);
    free(ps);
}

/* The file's token for an address: escaped, no spaces. */
static void key(char out[CD_ESCAPED_LEN(100)], const char *addr)
{
    cd_escape(out, CD_ESCAPED_LEN(100), addr, strnlen(addr, 100));
    for (char *c = out; *c; c++)
        if (*c == ' ')
            *c = '_';
}

int cd_peerstate_get(const cd_peerstate *ps, const char *addr, cp2p_penalty *out)
{
    char k[CD_ESCAPED_LEN(100)];
    if (!ps || !addr)
        return 0;
    key(k, addr);
    const ps_entry *e = find(ps, k);
    if (!e)
        return 0;
    *out = e->pen;
    return 1;
}

static int save(cd_peerstate *ps)
{
    size_t n = strlen(ps->path) + 5;
    char *tmp = cd_xmalloc(n);
    snprintf(tmp, n, "%s.tmp", ps->path);
    FILE *f = fopen(tmp, "w");
    int ok = f != NULL;
    if (f) {
        fprintf(f, "# conduitd: peer reconnect back-off and bans (libconduit-p2p), rewritten on "
                   "every change\n");
        for (size_t i = 0; i < ps->n; i++) {
            const cp2p_penalty *p = &ps->e[i].pen;
            fprintf(f, "%s failures=%u bans=%u until=%" PRId64 " banned=%d reason=%s\n",
                    ps->e[i].addr, p->failures, p->bans, p->until, p->banned,
                    cp2p_reason_str(p->reason));
        }
        ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
        ok = (fclose(f) == 0) && ok;
    }
    if (ok && rename(tmp, ps->path) != 0)
        ok = 0;
    if (!ok) {
        if (!ps->write_failed)
            cd_log_warn("%s: cannot write: %s (peer bans will not survive a restart)", ps->path,
                        strerror(errno));
        unlink(tmp);
    }
    ps->write_failed = !ok;
    free(tmp);
    return ok ? 0 : -1;
}

int cd_peerstate_set(cd_peerstate *ps, const char *addr, const cp2p_penalty *pen)
{
    char esc[CD_ESCAPED_LEN(100)];
    if (!ps || !addr)
        return -1;
    key(esc, addr);
    ps_entry *e = find(ps, esc);
    int empty = pen->failures == 0 && pen->bans == 0 && pen->until == 0;
    if (!e) {
        if (empty)
            return 0;
        if (ps->n == PS_MAX)
            return -1;
        e = &ps->e[ps->n++];
        e->addr = cd_xstrdup(esc);
    }
    if (empty) {
        free(e->addr);
        *e = ps->e[--ps->n];
    } else {
        e->pen = *pen;
    }
    return save(ps);
}
