/*
 * cd_status.c - progress figures, the periodic progress line, systemd
 * STATUS=, and the atomically replaced <datadir>/status file.
 *
 * Why a file: `conduit-cli status` must show how a sync is going without
 * talking to the daemon (no socket to block on, nothing to disturb). The
 * controller rewrites a few hundred bytes every status_interval seconds via
 * rename(), so a reader sees either the old or the new file, never a mix.
 */
#include "cd_status.h"

#include "cd_util.h"
#include "cd_notify.h"

#include <errno.h>
#include <jansson.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cd_build.h" /* CD_VERSION */

/* Seconds: a batch commit is a few ms on a quiet server and seconds when
 * PostgreSQL is saturated (checkpoints, a slow disk). */
const double cd_status_commit_le[CD_STATUS_COMMIT_BUCKETS] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

const char *const cd_status_mempool_reasons[CD_STATUS_MEMPOOL_REASONS] = {
    "unsolicited", "oversize", "unparsable", "notfound", "unanswered", "queue-full"};

/* The chain totals the Bitcoin SV node itself uses to estimate its sync
 * progress (bitcoin-sv/bitcoin-sv src/chainparams.cpp, chainTxData: "Data
 * as of block 000000000000000001d2ce55...c5d (height 523992)" for mainnet,
 * "...5b09cd6 (height 1223263)" for testnet; the rate is its "estimated
 * number of transactions per second after that timestamp"). Newer totals
 * make the estimates better: a line here, e.g. from a node's
 * `getchaintxstats` (txcount, time, txrate) and the block's height. */
typedef struct chain_txdata {
    const char *net;
    int32_t height;   /* the block of the count */
    double txs;       /* transactions from genesis up to it */
    int64_t time;     /* its header time */
    double tx_per_s;  /* after it */
} chain_txdata;

static const chain_txdata chain_txdata_table[] = {
    {"main", 523992, 248589038.0, 1522608016, 3.2},
    {"test", 1223263, 15052068.0, 1522608381, 0.15},
};

int cd_status_chain_txs(const char *net, int32_t height, int64_t time, double *txs)
{
    for (size_t i = 0; i < CD_ARRAY_LEN(chain_txdata_table); i++) {
        const chain_txdata *d = &chain_txdata_table[i];
        if (strcmp(d->net, net) != 0)
            continue;
        if (height <= d->height)
            *txs = d->txs * ((double)(height < 0 ? 0 : height) + 1.0) / ((double)d->height + 1.0);
        else
            *txs = d->txs + (double)(time > d->time ? time - d->time : 0) * d->tx_per_s +
                   (double)(height - d->height); /* at least one tx a block */
        return 0;
    }
    return -1;
}

/* progress_tx and txs_left from the heights and header times. */
static void estimate_txs(cd_status *st)
{
    double done, total;
    st->progress_tx = -1;
    st->txs_left = -1;
    if (st->header_height < 0 ||
        cd_status_chain_txs(st->network, st->header_height, st->header_time, &total) != 0)
        return;
    if (st->height < 0)
        done = 0;
    else if (cd_status_chain_txs(st->network, st->height, st->tip_time, &done) != 0)
        return;
    if (done > total || st->height >= st->header_height)
        done = total;
    st->progress_tx = total > 0 ? done / total : 1.0;
    st->txs_left = total - done;
}

void cd_status_init(cd_status *st, const cd_config *cfg)
{
    memset(st, 0, sizeof(*st));
    st->pid = (int64_t)getpid();
    snprintf(st->network, sizeof(st->network), "%s", cfg && cfg->net ? cfg->net->name : "?");
    snprintf(st->version, sizeof(st->version), "%s", CD_VERSION);
    st->started_at = (int64_t)time(NULL);
    snprintf(st->state, sizeof(st->state), "starting");
    st->height = -1;
    st->stored_height = -1;
    st->indexed_height = -1;
    st->header_height = -1;
    st->eta_s = -1;
    st->progress_tx = -1;
    st->txs_left = -1;
    st->index_backlog_txs = -1;
    st->index_indexed_txs = -1;
    st->partition_level = -1;
    st->partition_merging = -1;
    if (cfg) {
        st->ring_size = cfg->ring_size;
        st->interval_s = cfg->status_interval_s;
    }
}

void cd_status_sample(cd_status *st, uint64_t blocks_done, uint64_t bytes_done, uint64_t txs_done,
                      double now_s)
{
    st->blocks_done = blocks_done;
    st->bytes_done = bytes_done;
    st->txs_done = txs_done;
    if (st->win_n > 0) {
        unsigned last = (st->win_next + CD_STATUS_WINDOW - 1) % CD_STATUS_WINDOW;
        if (now_s - st->win[last].t <= 0.05)
            return; /* too short to measure */
    }
    st->win[st->win_next].t = now_s;
    st->win[st->win_next].blocks = blocks_done;
    st->win[st->win_next].bytes = bytes_done;
    st->win[st->win_next].txs = txs_done;
    st->win_next = (st->win_next + 1) % CD_STATUS_WINDOW;
    if (st->win_n < CD_STATUS_WINDOW)
        st->win_n++;
    if (st->win_n < 2) {
        st->eta_s = -1;
        return;
    }
    /* the oldest sample still in the window against this one */
    unsigned old = (st->win_next + CD_STATUS_WINDOW - st->win_n) % CD_STATUS_WINDOW;
    double dt = now_s - st->win[old].t;
    st->blocks_per_s = (double)(blocks_done - st->win[old].blocks) / dt;
    st->mb_per_s = (double)(bytes_done - st->win[old].bytes) / dt / 1e6;
    st->tx_per_s = (double)(txs_done - st->win[old].txs) / dt;
    estimate_txs(st);
    if (st->header_height >= 0 && st->height >= st->header_height)
        st->eta_s = 0;
    else if (st->txs_left >= 0) /* blocks differ in size by 10^6: count txs */
        st->eta_s = st->tx_per_s > 1e-6 ? st->txs_left / st->tx_per_s : -1;
    else if (st->header_height >= 0 && st->blocks_per_s > 1e-6)
        st->eta_s =
            (double)(st->header_height - (st->height < 0 ? -1 : st->height)) / st->blocks_per_s;
    else
        st->eta_s = -1;
}

void cd_status_format_duration(double s, char *buf, size_t len)
{
    if (s < 0) {
        snprintf(buf, len, "?");
        return;
    }
    uint64_t t = (uint64_t)(s + 0.5);
    if (t >= 86400)
        snprintf(buf, len, "%" PRIu64 "d%02" PRIu64 "h", t / 86400, (t % 86400) / 3600);
    else if (t >= 3600)
        snprintf(buf, len, "%" PRIu64 "h%02" PRIu64 "m", t / 3600, (t % 3600) / 60);
    else if (t >= 60)
        snprintf(buf, len, "%" PRIu64 "m%02" PRIu64 "s", t / 60, t % 60);
    else
        snprintf(buf, len, "%" PRIu64 "s", t);
}

static double ring_pct(const cd_status *st)
{
    return st->ring_size ? 100.0 * (double)st->ring_used / (double)st->ring_size : 0.0;
}

static double sync_pct(const cd_status *st)
{
    if (st->header_height <= 0)
        return st->height >= 0 && st->header_height == 0 ? 100.0 : 0.0;
    double p = 100.0 * (double)(st->height < 0 ? 0 : st->height) / (double)st->header_height;
    return p > 100.0 ? 100.0 : p;
}

int cd_status_format_line(const cd_status *st, char *buf, size_t len)
{
    char eta[32];
    cd_status_format_duration(st->eta_s, eta, sizeof(eta));
    return snprintf(buf, len,
                    "%s height=%" PRId32 "/%" PRId32 " (%.1f%%) %.1f blk/s %.1f MB/s %.0f tx/s "
                    "ring %.0f%% workers %" PRIu32 "/%" PRIu32 " peers %" PRIu32 " eta %s",
                    st->state, st->height, st->header_height, sync_pct(st), st->blocks_per_s,
                    st->mb_per_s, st->tx_per_s, ring_pct(st), st->workers_alive, st->workers_total,
                    st->peers, eta);
}

void cd_status_print(FILE *f, const cd_status *st, int alive)
{
    char eta[32], up[32], age[32];
    int64_t now = (int64_t)time(NULL);
    cd_status_format_duration(st->eta_s, eta, sizeof(eta));
    cd_status_format_duration((double)(now - st->started_at), up, sizeof(up));
    cd_status_format_duration((double)(now - st->updated_at), age, sizeof(age));
    fprintf(f, "conduitd %s (%s)\n", st->version, st->network);
    fprintf(f, "  daemon:        %s (pid %" PRId64 ")\n",
            alive > 0    ? "running"
            : alive == 0 ? "NOT RUNNING"
                         : "unknown",
            st->pid);
    fprintf(f, "  state:         %s%s\n", st->state, alive == 0 ? " (last recorded)" : "");
    if (st->stall[0])
        fprintf(f, "  STALE:         %s\n", st->stall);
    fprintf(f, "  updated:       %s ago (up %s)\n", age, up);
    fprintf(f, "  height:        %" PRId32 " / best header %" PRId32 " (%.1f%%)\n", st->height,
            st->header_height, sync_pct(st));
    fprintf(f, "  stored:        %" PRId32 "  indexed: %" PRId32 "\n", st->stored_height,
            st->indexed_height);
    if (st->tip_hash[0]) {
        char when[32] = "?", tip_age[32] = "?";
        time_t t = (time_t)st->tip_time;
        struct tm tm;
        if (st->tip_time > 0 && gmtime_r(&t, &tm))
            strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        if (st->tip_time > 0)
            cd_status_format_duration((double)(now - st->tip_time), tip_age, sizeof(tip_age));
        fprintf(f, "  %s%s\n", st->indexed_height >= 0 ? "indexed tip:   " : "stored tip:    ",
                st->tip_hash);
        fprintf(f, "  tip time:      %s (%s ago)\n", when, tip_age);
    }
    if (st->index_mode[0])
        fprintf(f, "  index mode:    %s\n", st->index_mode);
    if (st->index_why[0])
        fprintf(f, "  index choice:  %s\n", st->index_why);
    if (st->partitions > 0)
        fprintf(f, "  partitions:    %d (open tip: %" PRId64 " txs; %" PRIu64 " rolls this run)\n",
                (int)st->partitions, st->partition_tip_txs, st->partition_rolls);
    if (st->partition_level >= 0)
        fprintf(f, "  merges:        %" PRIu64 " this run; highest level %d%s\n",
                st->partition_merges, (int)st->partition_level,
                st->partition_merging >= 0 ? "; copying partitions to merge now" : "");
    if (st->progress_tx >= 0)
        fprintf(f, "  progress:      %.1f%% of the transactions (estimated from the chain's known "
                   "tx totals), %.1f%% of the blocks\n",
                100.0 * st->progress_tx, sync_pct(st));
    fprintf(f, "  speed:         %.2f blocks/s  %.2f MB/s  %.0f tx/s (over %d status intervals)\n",
            st->blocks_per_s, st->mb_per_s, st->tx_per_s, CD_STATUS_WINDOW - 1);
    if (st->header_height >= 0 && st->height >= st->header_height)
        fprintf(f, "  eta:           %s (caught up)\n", eta);
    else if (st->txs_left >= 0)
        fprintf(f, "  eta:           %s (estimated: ~%.3g txs left at the tx rate above)\n", eta,
                st->txs_left);
    else
        fprintf(f, "  eta:           %s (by blocks: no known tx totals for %s)\n", eta,
                st->network);
    fprintf(f, "  ring:          %.1f%% of %.0f MB in use\n", ring_pct(st),
            (double)st->ring_size / (1024.0 * 1024.0));
    fprintf(f, "  workers alive: %" PRIu32 " / %" PRIu32 "\n", st->workers_alive,
            st->workers_total);
    if (st->best_hash[0])
        fprintf(f, "  best header:   %s\n", st->best_hash);
    for (uint32_t i = 0; i < st->n_restart; i++)
        if (st->restart[i].n)
            fprintf(f, "  restarts:      %s %" PRIu64 "\n", st->restart[i].name, st->restart[i].n);
    fprintf(f, "  peers:         %" PRIu32 "\n", st->peers);
    for (uint32_t i = 0; i < st->n_peer; i++)
        fprintf(f, "    %-21s height %-8" PRId32 " in %.1f MB  out %.1f MB  %s\n",
                st->peer[i].addr, st->peer[i].height, (double)st->peer[i].bytes_in / 1e6,
                (double)st->peer[i].bytes_out / 1e6, st->peer[i].agent);
    fprintf(f, "  this run:      %" PRIu64 " blocks, %.1f MB, %" PRIu64 " txs\n", st->blocks_done,
            (double)st->bytes_done / 1e6, st->txs_done);
}

static char *status_path(const char *datadir, const char *suffix)
{
    size_t n = strlen(datadir) + strlen(CD_STATUS_FILE) + strlen(suffix) + 2;
    char *p = cd_xmalloc(n);
    snprintf(p, n, "%s/%s%s", datadir, CD_STATUS_FILE, suffix);
    return p;
}

/* The file as it is when the disk is full (issue 11, F6): the old one
 * rewritten in place, without a temporary file. Not atomic (a reader may see
 * a mix for an instant), but the status is what tells the operator the disk
 * is full, and the space of the file already exists. Returns 0 or -1. */
static int write_in_place(const char *path, const char *buf, size_t n)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t w = pwrite(fd, buf, n, 0);
    int ok = w == (ssize_t)n && ftruncate(fd, (off_t)n) == 0;
    int e = errno;
    close(fd);
    errno = ok ? 0 : (w >= 0 && w != (ssize_t)n ? ENOSPC : e);
    return ok ? 0 : -1;
}

int cd_status_write(const char *datadir, cd_status *st)
{
    st->updated_at = (int64_t)time(NULL);
    /* one line: any control byte of a path becomes '?' */
    char stall[sizeof(st->stall)];
    snprintf(stall, sizeof(stall), "%s", st->stall);
    for (char *q = stall; *q; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7f)
            *q = '?';
    char buf[8192];
    int n = snprintf(buf, sizeof(buf),
                     "# conduitd status (read by conduit-cli status)\n"
                     "format=1\n"
                     "pid=%" PRId64 "\n"
                     "network=%s\n"
                     "version=%s\n"
                     "started_at=%" PRId64 "\n"
                     "updated_at=%" PRId64 "\n"
                     "interval_s=%" PRIu32 "\n"
                     "state=%s\n"
                     "height=%" PRId32 "\n"
                     "stored_height=%" PRId32 "\n"
                     "indexed_height=%" PRId32 "\n"
                     "header_height=%" PRId32 "\n"
                     "peers=%" PRIu32 "\n"
                     "workers_alive=%" PRIu32 "\n"
                     "workers_total=%" PRIu32 "\n"
                     "ring_used=%" PRIu64 "\n"
                     "ring_size=%" PRIu64 "\n"
                     "blocks_done=%" PRIu64 "\n"
                     "bytes_done=%" PRIu64 "\n"
                     "txs_done=%" PRIu64 "\n"
                     "blocks_per_s=%.3f\n"
                     "mb_per_s=%.3f\n"
                     "tx_per_s=%.1f\n"
                     "eta_s=%.0f\n"
                     "index_mode=%s\n"
                     "stall=%s\n",
                     st->pid, st->network, st->version, st->started_at, st->updated_at,
                     st->interval_s, st->state, st->height, st->stored_height, st->indexed_height,
                     st->header_height, st->peers, st->workers_alive, st->workers_total,
                     st->ring_used, st->ring_size, st->blocks_done, st->bytes_done, st->txs_done,
                     st->blocks_per_s, st->mb_per_s, st->tx_per_s, st->eta_s, st->index_mode,
                     stall);
    if (n >= 0 && (size_t)n < sizeof(buf))
        n += snprintf(buf + n, sizeof(buf) - (size_t)n,
                      "best_hash=%s\ntip_hash=%s\ntip_time=%" PRId64 "\nheader_time=%" PRId64
                      "\nprogress_tx=%.6f\ntxs_left=%.0f\ncommit=%" PRIu64 " %.6f",
                      st->best_hash, st->tip_hash, st->tip_time, st->header_time,
                      st->progress_tx, st->txs_left, st->commit_n, st->commit_sum_s);
    for (int i = 0; i < CD_STATUS_COMMIT_BUCKETS && n >= 0 && (size_t)n < sizeof(buf); i++)
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, " %" PRIu64, st->commit_le[i]);
    if (n >= 0 && (size_t)n < sizeof(buf))
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "\n");
    if (n >= 0 && (size_t)n < sizeof(buf)) {
        char why[sizeof(st->index_why)]; /* one line, whatever it holds */
        snprintf(why, sizeof(why), "%s", st->index_why);
        for (char *q = why; *q; q++)
            if ((unsigned char)*q < 0x20 || *q == 0x7f)
                *q = '?';
        n += snprintf(buf + n, sizeof(buf) - (size_t)n,
                      "index_why=%s\nindex_backlog_txs=%.0f\nindex_indexed_txs=%.0f\n"
                      "partitions=%d\npartition_tip_txs=%" PRId64 "\npartition_rolls=%" PRIu64
                      "\npartition_merges=%" PRIu64 "\npartition_level=%d\npartition_merging=%d\n",
                      why, st->index_backlog_txs, st->index_indexed_txs, (int)st->partitions,
                      st->partition_tip_txs, st->partition_rolls, st->partition_merges,
                      (int)st->partition_level, (int)st->partition_merging);
    }
    for (uint32_t i = 0; i < st->n_restart && n >= 0 && (size_t)n < sizeof(buf); i++)
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "restart=%s %" PRIu64 "\n",
                      st->restart[i].name, st->restart[i].n);
    for (int i = 0; i < CD_STATUS_MEMPOOL_REASONS && n >= 0 && (size_t)n < sizeof(buf); i++)
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "mempool_refused=%s %" PRIu64 "\n",
                      cd_status_mempool_reasons[i], st->mempool_refused[i]);
    for (uint32_t i = 0; i < st->n_peer && i < CD_STATUS_MAX_PEERS && n >= 0 &&
                         (size_t)n < sizeof(buf);
         i++) {
        const cd_status_peer *p = &st->peer[i];
        /* the agent last: it may hold spaces */
        n += snprintf(buf + n, sizeof(buf) - (size_t)n,
                      "peer=%s %" PRId32 " %" PRIu64 " %" PRIu64 " %s\n", p->addr, p->height,
                      p->bytes_in, p->bytes_out, p->agent);
    }
    if (n < 0 || (size_t)n >= sizeof(buf)) {
        errno = EOVERFLOW;
        return -1;
    }
    char *tmp = status_path(datadir, ".tmp");
    char *path = status_path(datadir, "");
    int rc = -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        ssize_t w = write(fd, buf, (size_t)n);
        int e = errno;
        if (close(fd) == 0 && w == n && rename(tmp, path) == 0) {
            rc = 0;
        } else {
            if (w >= 0 && w != n)
                e = ENOSPC; /* a short write: the filesystem is full */
            unlink(tmp);
            errno = e ? e : EIO;
        }
    }
    if (rc != 0 && (errno == ENOSPC || errno == EDQUOT))
        rc = write_in_place(path, buf, (size_t)n);
    int e = errno;
    free(tmp);
    free(path);
    errno = e;
    return rc;
}

static void copy_str(char *dst, size_t len, const char *v)
{
    snprintf(dst, len, "%s", v);
}

/* "commit=<n> <sum_s> <le_1> ... <le_N>" */
static void read_commit(cd_status *st, const char *v)
{
    char *end;
    st->commit_n = strtoull(v, &end, 10);
    st->commit_sum_s = strtod(end, &end);
    for (int i = 0; i < CD_STATUS_COMMIT_BUCKETS; i++)
        st->commit_le[i] = strtoull(end, &end, 10);
}

int cd_status_read(const char *datadir, cd_status *st)
{
    char *path = status_path(datadir, "");
    FILE *f = fopen(path, "r");
    int e = errno;
    free(path);
    if (f == NULL) {
        errno = e;
        return -1;
    }
    memset(st, 0, sizeof(*st));
    st->height = -1;
    st->stored_height = -1;
    st->indexed_height = -1;
    st->header_height = -1;
    st->eta_s = -1;
    st->progress_tx = -1; /* absent in files of older daemons */
    st->txs_left = -1;
    st->index_backlog_txs = -1;
    st->index_indexed_txs = -1;
    st->partition_tip_txs = -1;
    st->partition_level = -1; /* absent in files of older daemons */
    st->partition_merging = -1;
    int format = 0;
    char line[512];
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        char *eq = strchr(line, '=');
        if (eq == NULL)
            continue;
        *eq = '\0';
        const char *k = line, *v = eq + 1;
        if (strcmp(k, "format") == 0)
            format = atoi(v);
        else if (strcmp(k, "pid") == 0)
            st->pid = strtoll(v, NULL, 10);
        else if (strcmp(k, "network") == 0)
            copy_str(st->network, sizeof(st->network), v);
        else if (strcmp(k, "version") == 0)
            copy_str(st->version, sizeof(st->version), v);
        else if (strcmp(k, "started_at") == 0)
            st->started_at = strtoll(v, NULL, 10);
        else if (strcmp(k, "updated_at") == 0)
            st->updated_at = strtoll(v, NULL, 10);
        else if (strcmp(k, "interval_s") == 0)
            st->interval_s = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(k, "state") == 0)
            copy_str(st->state, sizeof(st->state), v);
        else if (strcmp(k, "index_mode") == 0)
            copy_str(st->index_mode, sizeof(st->index_mode), v);
        else if (strcmp(k, "index_why") == 0)
            copy_str(st->index_why, sizeof(st->index_why), v);
        else if (strcmp(k, "index_backlog_txs") == 0)
            st->index_backlog_txs = strtod(v, NULL);
        else if (strcmp(k, "index_indexed_txs") == 0)
            st->index_indexed_txs = strtod(v, NULL);
        else if (strcmp(k, "partitions") == 0)
            st->partitions = (int32_t)strtol(v, NULL, 10);
        else if (strcmp(k, "partition_tip_txs") == 0)
            st->partition_tip_txs = strtoll(v, NULL, 10);
        else if (strcmp(k, "partition_rolls") == 0)
            st->partition_rolls = strtoull(v, NULL, 10);
        else if (strcmp(k, "partition_merges") == 0)
            st->partition_merges = strtoull(v, NULL, 10);
        else if (strcmp(k, "partition_level") == 0)
            st->partition_level = (int32_t)strtol(v, NULL, 10);
        else if (strcmp(k, "partition_merging") == 0)
            st->partition_merging = (int32_t)strtol(v, NULL, 10);
        else if (strcmp(k, "stall") == 0)
            copy_str(st->stall, sizeof(st->stall), v);
        else if (strcmp(k, "height") == 0)
            st->height = (int32_t)strtol(v, NULL, 10);
        else if (strcmp(k, "stored_height") == 0)
            st->stored_height = (int32_t)strtol(v, NULL, 10);
        else if (strcmp(k, "indexed_height") == 0)
            st->indexed_height = (int32_t)strtol(v, NULL, 10);
        else if (strcmp(k, "header_height") == 0)
            st->header_height = (int32_t)strtol(v, NULL, 10);
        else if (strcmp(k, "peers") == 0)
            st->peers = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(k, "workers_alive") == 0)
            st->workers_alive = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(k, "workers_total") == 0)
            st->workers_total = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(k, "ring_used") == 0)
            st->ring_used = strtoull(v, NULL, 10);
        else if (strcmp(k, "ring_size") == 0)
            st->ring_size = strtoull(v, NULL, 10);
        else if (strcmp(k, "blocks_done") == 0)
            st->blocks_done = strtoull(v, NULL, 10);
        else if (strcmp(k, "bytes_done") == 0)
            st->bytes_done = strtoull(v, NULL, 10);
        else if (strcmp(k, "txs_done") == 0)
            st->txs_done = strtoull(v, NULL, 10);
        else if (strcmp(k, "blocks_per_s") == 0)
            st->blocks_per_s = strtod(v, NULL);
        else if (strcmp(k, "mb_per_s") == 0)
            st->mb_per_s = strtod(v, NULL);
        else if (strcmp(k, "tx_per_s") == 0)
            st->tx_per_s = strtod(v, NULL);
        else if (strcmp(k, "best_hash") == 0)
            copy_str(st->best_hash, sizeof(st->best_hash), v);
        else if (strcmp(k, "tip_hash") == 0)
            copy_str(st->tip_hash, sizeof(st->tip_hash), v);
        else if (strcmp(k, "tip_time") == 0)
            st->tip_time = strtoll(v, NULL, 10);
        else if (strcmp(k, "header_time") == 0)
            st->header_time = strtoll(v, NULL, 10);
        else if (strcmp(k, "progress_tx") == 0)
            st->progress_tx = strtod(v, NULL);
        else if (strcmp(k, "txs_left") == 0)
            st->txs_left = strtod(v, NULL);
        else if (strcmp(k, "commit") == 0)
            read_commit(st, v);
        else if (strcmp(k, "restart") == 0 && st->n_restart < CD_STATUS_MAX_KINDS) {
            cd_status_count *c = &st->restart[st->n_restart];
            char name[24];
            if (sscanf(v, "%23s %" SCNu64, name, &c->n) == 2) {
                copy_str(c->name, sizeof(c->name), name);
                st->n_restart++;
            }
        } else if (strcmp(k, "mempool_refused") == 0) {
            char name[24];
            uint64_t cnt;
            if (sscanf(v, "%23s %" SCNu64, name, &cnt) == 2)
                for (int i = 0; i < CD_STATUS_MEMPOOL_REASONS; i++)
                    if (strcmp(name, cd_status_mempool_reasons[i]) == 0)
                        st->mempool_refused[i] = cnt;
        }
        else if (strcmp(k, "peer") == 0 && st->n_peer < CD_STATUS_MAX_PEERS) {
            cd_status_peer *p = &st->peer[st->n_peer];
            int used = 0;
            char addr[64];
            if (sscanf(v, "%63s %" SCNd32 " %" SCNu64 " %" SCNu64 " %n", addr, &p->height,
                       &p->bytes_in, &p->bytes_out, &used) >= 4) {
                copy_str(p->addr, sizeof(p->addr), addr);
                copy_str(p->agent, sizeof(p->agent), used > 0 ? v + used : "");
                st->n_peer++;
            }
        } else if (strcmp(k, "eta_s") == 0)
            st->eta_s = strtod(v, NULL);
    }
    fclose(f);
    if (format < 1 || st->pid <= 0) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

int cd_status_pid_alive(const cd_status *st)
{
    if (st->pid <= 0)
        return 0;
    if (kill((pid_t)st->pid, 0) == 0)
        return 1;
    return errno == EPERM; /* exists, owned by someone else */
}

int cd_status_stale(const cd_status *st, int64_t now)
{
    int64_t limit = 3 * (int64_t)(st->interval_s ? st->interval_s : 10) + 5;
    return now - st->updated_at > limit;
}

int cd_status_publish(const cd_config *cfg, cd_status *st)
{
    static int last_errno;
    st->interval_s = cfg->status_interval_s; /* reloadable */
    char line[512];
    cd_status_format_line(st, line, sizeof(line));
    cd_log_info("progress: %s", line);
    CD_IGNORE(cd_notify_status("%s", line)); /* best effort: the log has the line */
    if (cd_status_write(cfg->datadir, st) < 0) {
        if (errno != last_errno)
            cd_log_error("cannot write status file %s/%s: %s", cfg->datadir, CD_STATUS_FILE,
                         strerror(errno));
        last_errno = errno;
        return -1;
    }
    last_errno = 0;
    return 0;
}

char *cd_status_json(const cd_status *st, int alive, int64_t now)
{
    /* eta_s is whole seconds (the status file holds it so): an integer */
    double eta = st->eta_s;
    json_t *eta_j = eta > -9e15 && eta < 9e15
                        ? json_integer((json_int_t)(eta < 0 ? eta - 0.5 : eta + 0.5))
                        : json_real(eta);
    json_t *o = json_pack(
        "{s:b, s:b, s:I, s:s, s:s, s:s, s:I, s:I, s:I, s:i, s:i, s:i, s:i, "
        "s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:o, s:I, s:I, s:I, s:s}",
        "running", alive, "stale", alive && (cd_status_stale(st, now) || st->stall[0]), "pid",
        (json_int_t)st->pid, "network", st->network, "version", st->version, "state", st->state,
        "started_at", (json_int_t)st->started_at, "updated_at", (json_int_t)st->updated_at,
        "interval_s", (json_int_t)st->interval_s, "height", (int)st->height, "stored_height",
        (int)st->stored_height, "indexed_height", (int)st->indexed_height, "header_height",
        (int)st->header_height, "peers", (json_int_t)st->peers, "workers_alive",
        (json_int_t)st->workers_alive, "workers_total", (json_int_t)st->workers_total, "ring_used",
        (json_int_t)st->ring_used, "ring_size", (json_int_t)st->ring_size, "blocks_per_s",
        st->blocks_per_s, "mb_per_s", st->mb_per_s, "tx_per_s", st->tx_per_s, "eta_s", eta_j,
        "blocks_done", (json_int_t)st->blocks_done, "bytes_done", (json_int_t)st->bytes_done,
        "txs_done", (json_int_t)st->txs_done, "index_mode", st->index_mode);
    if (!o)
        return NULL;
    /* last, so the fields before keep their order: why the index is stale */
    if (st->stall[0] && json_object_set_new(o, "stall", json_string(st->stall)) != 0) {
        json_decref(o);
        return NULL;
    }
    json_t *peers = json_array();
    for (uint32_t i = 0; peers && i < st->n_peer; i++)
        json_array_append_new(peers, json_pack("{s:s, s:s, s:i, s:I, s:I}", "addr",
                                               st->peer[i].addr, "agent", st->peer[i].agent,
                                               "height", (int)st->peer[i].height, "bytes_in",
                                               (json_int_t)st->peer[i].bytes_in, "bytes_out",
                                               (json_int_t)st->peer[i].bytes_out));
    if (json_object_set_new(o, "best_hash",
                            st->best_hash[0] ? json_string(st->best_hash) : json_null()) != 0 ||
        json_object_set_new(o, "tip_hash",
                            st->tip_hash[0] ? json_string(st->tip_hash) : json_null()) != 0 ||
        json_object_set_new(o, "tip_time",
                            st->tip_time > 0 ? json_integer(st->tip_time) : json_null()) != 0 ||
        json_object_set_new(o, "progress_tx_estimated",
                            st->progress_tx >= 0 ? json_real(st->progress_tx) : json_null()) != 0 ||
        json_object_set_new(o, "txs_left_estimated",
                            st->txs_left >= 0 ? json_integer((json_int_t)st->txs_left)
                                              : json_null()) != 0 ||
        json_object_set_new(o, "index_why", json_string(st->index_why)) != 0 ||
        json_object_set_new(o, "index_backlog_txs_estimated",
                            st->index_backlog_txs >= 0
                                ? json_integer((json_int_t)st->index_backlog_txs)
                                : json_null()) != 0 ||
        json_object_set_new(o, "index_indexed_txs",
                            st->index_indexed_txs >= 0
                                ? json_integer((json_int_t)st->index_indexed_txs)
                                : json_null()) != 0 ||
        json_object_set_new(o, "partitions",
                            st->partitions > 0 ? json_integer(st->partitions) : json_null()) != 0 ||
        json_object_set_new(o, "partition_tip_txs",
                            st->partitions > 0 ? json_integer((json_int_t)st->partition_tip_txs)
                                               : json_null()) != 0 ||
        json_object_set_new(o, "partition_rolls",
                            json_integer((json_int_t)st->partition_rolls)) != 0 ||
        json_object_set_new(o, "partition_merges",
                            json_integer((json_int_t)st->partition_merges)) != 0 ||
        json_object_set_new(o, "partition_level", st->partition_level >= 0
                                                      ? json_integer(st->partition_level)
                                                      : json_null()) != 0 ||
        json_object_set_new(o, "partition_merging", st->partition_merging >= 0
                                                        ? json_integer(st->partition_merging)
                                                        : json_null()) != 0 ||
        json_object_set_new(o, "peer_list", peers) != 0) {
        json_decref(o);
        return NULL;
    }
    /* the rates were written with 3 (1) decimals: 15 significant digits
     * print them back as written, without binary noise */
    char *text = json_dumps(o, JSON_REAL_PRECISION(15));
    json_decref(o);
    if (!text)
        return NULL;
    size_t n = strlen(text);
    char *out = realloc(text, n + 2);
    if (!out) {
        free(text);
        return NULL;
    }
    out[n] = '\n';
    out[n + 1] = '\0';
    return out;
}
