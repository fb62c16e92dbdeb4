/*
 * cd_http_metrics.c - GET /metrics: the daemon's figures in the Prometheus
 * text exposition format (version 0.0.4), for Prometheus, Grafana and the
 * like, the way electrs and Fulcrum expose theirs.
 *
 * Why here: the HTTP API child already reads the status file the controller
 * rewrites every status_interval seconds (the same figures `conduit-cli
 * status` shows) and holds a PostgreSQL session, so the controller's p2p
 * loop does no extra work per scrape. A scrape therefore sees figures at
 * most status_interval old; conduitd_status_updated_time_seconds says how
 * old. Process memory is read from /proc for the controller and each of its
 * children (workers, this server), summed by kind.
 *
 * Names follow the Prometheus naming rules (base units, _total for
 * counters; checked by `promtool check metrics` in
 * tests/functional/test_metrics.py). Counters count "this run": they restart
 * from 0 with the daemon, which Prometheus's rate() handles as a reset.
 * The metric list is documented in docs/OPERATIONS.md ("Metrics").
 */
#include "cd_http_int.h"
#include "cd_status.h"

#include "cd_http.h"
#include "cd_log.h"
#include "cd_util.h"

#include <dirent.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <signal.h>
#include "cd_signals.h" /* cd_child_exit */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void head(struct evbuffer *b, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void gauge(struct evbuffer *b, const char *name, const char *help, double v)
{
    head(b, name, "gauge", help);
    evbuffer_add_printf(b, "%s %.17g\n", name, v);
}

static void counter(struct evbuffer *b, const char *name, const char *help, uint64_t v)
{
    head(b, name, "counter", help);
    evbuffer_add_printf(b, "%s %" PRIu64 "\n", name, v);
}

/* A label value: the status file's words are [a-z0-9.-], but escape what
 * the format requires anyway (backslash, quote, newline). */
static void label_value(struct evbuffer *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            evbuffer_add_printf(b, "\\%c", *v);
        else if (*v == '\n')
            evbuffer_add(b, "\\n", 2);
        else
            evbuffer_add(b, v, 1);
    }
}

/* Resident set of a process, from /proc/<pid>/statm (pages). 0 if gone. */
static uint64_t rss_bytes(long pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/statm", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    unsigned long long size = 0, res = 0;
    int n = fscanf(f, "%llu %llu", &size, &res);
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return n == 2 && page > 0 ? (uint64_t)res * (uint64_t)page : 0;
}

/* The parent pid and the comm name of a process (/proc/<pid>/stat). */
static int proc_stat(long pid, long *ppid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *rp = strrchr(buf, ')'); /* the name may hold spaces and parens */
    if (!rp || sscanf(rp + 1, " %*c %ld", ppid) != 1)
        return -1;
    return 0;
}

/* RSS of the controller and the sum over its children (workers and this
 * server). */
static void memory(struct evbuffer *b, long ctl_pid)
{
    uint64_t ctl = rss_bytes(ctl_pid), kids = 0;
    unsigned n_kids = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        long ppid;
        if (*end || pid <= 0 || proc_stat(pid, &ppid) != 0 || ppid != ctl_pid)
            continue;
        kids += rss_bytes(pid);
        n_kids++;
    }
    if (d)
        closedir(d);
    head(b, "conduitd_resident_memory_bytes", "gauge",
         "Resident memory of the controller and of its child processes (workers, HTTP server)");
    evbuffer_add_printf(b, "conduitd_resident_memory_bytes{process=\"controller\"} %" PRIu64 "\n",
                        ctl);
    evbuffer_add_printf(b, "conduitd_resident_memory_bytes{process=\"children\"} %" PRIu64 "\n",
                        kids);
    gauge(b, "conduitd_child_processes", "Child processes of the controller (workers, HTTP server)",
          n_kids);
}

/* Mempool size and the indexed tip's header time, from PostgreSQL; nothing
 * (and conduitd_postgres_up 0) when it cannot be asked. */
static void from_pg(http_srv *s, struct evbuffer *b)
{
    if (!s->cfg->index)
        return;
    PGconn *c = cd_http_srv_pg(s);
    PGresult *r = c ? PQexec(c, "SELECT (SELECT n FROM mempool_size), "
                                "(SELECT bytes FROM mempool_size), "
                                "(SELECT cd_header_time(header) FROM best_tip)")
                    : NULL;
    int ok = r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    gauge(b, "conduitd_postgres_up", "1 if this scrape could query PostgreSQL", ok);
    if (ok) {
        if (!PQgetisnull(r, 0, 0))
            gauge(b, "conduitd_mempool_transactions", "Transactions in the mempool tables",
                  strtod(PQgetvalue(r, 0, 0), NULL));
        if (!PQgetisnull(r, 0, 1))
            gauge(b, "conduitd_mempool_bytes", "Bytes of the transactions in the mempool tables",
                  strtod(PQgetvalue(r, 0, 1), NULL));
        if (!PQgetisnull(r, 0, 2))
            gauge(b, "conduitd_indexed_tip_time_seconds",
                  "Header time of the indexed best tip (unix seconds); time() minus it is the tip "
                  "age",
                  strtod(PQgetvalue(r, 0, 2), NULL));
    }
    PQclear(r);
    if (!ok)
        return;
    /* Evictions by reason over a fixed recent window: a figure every server
     * process computes alike from the table (a counter kept per process
     * would differ between the API's processes), and a bounded range scan
     * of mempool_evicted_at_idx however long the records are kept. */
    r = PQexec(c, "SELECT reason, count(*) FROM mempool_evicted "
                  "WHERE evicted_at > now() - interval '5 minutes' GROUP BY reason ORDER BY reason");
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        head(b, "conduitd_mempool_evicted_5m", "gauge",
             "Transactions that left the mempool tables in the last 5 minutes, by reason "
             "(mempool_evicted; confirmed, double-spend, expired, size-limit, ...)");
        /* one series even when nothing was evicted, so the family exists */
        if (PQntuples(r) == 0)
            evbuffer_add_printf(b, "conduitd_mempool_evicted_5m{reason=\"confirmed\"} 0\n");
        for (int i = 0; i < PQntuples(r); i++) {
            evbuffer_add_printf(b, "conduitd_mempool_evicted_5m{reason=\"");
            label_value(b, PQgetvalue(r, i, 0));
            evbuffer_add_printf(b, "\"} %s\n", PQgetvalue(r, i, 1));
        }
    }
    PQclear(r);
}

/* Issue 17's figures from the status file: restarts by kind, the commit
 * latency histogram, mempool refusals by reason, the tip, the estimates. */
static void from_status(struct evbuffer *b, const cd_status *st)
{
    if (st->n_restart > 0) {
        head(b, "conduitd_worker_restarts_total", "counter",
             "Child processes restarted after an unexpected end, by kind (parser, writer, merkle, "
             "http, metrics, ...)");
        for (uint32_t i = 0; i < st->n_restart; i++) {
            evbuffer_add_printf(b, "conduitd_worker_restarts_total{kind=\"");
            label_value(b, st->restart[i].name);
            evbuffer_add_printf(b, "\"} %" PRIu64 "\n", st->restart[i].n);
        }
    }
    if (st->indexed_height >= 0 || st->commit_n > 0) {
        head(b, "conduitd_postgres_commit_seconds", "histogram",
             "Duration of the parsers' PostgreSQL batch commits (end of COPY, markers, COMMIT)");
        for (int i = 0; i < CD_STATUS_COMMIT_BUCKETS; i++)
            evbuffer_add_printf(b, "conduitd_postgres_commit_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                                cd_status_commit_le[i], st->commit_le[i]);
        evbuffer_add_printf(b,
                            "conduitd_postgres_commit_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n"
                            "conduitd_postgres_commit_seconds_sum %.6f\n"
                            "conduitd_postgres_commit_seconds_count %" PRIu64 "\n",
                            st->commit_n, st->commit_sum_s, st->commit_n);
    }
    head(b, "conduitd_mempool_refused_total", "counter",
         "Relayed transactions not taken into the mempool tables, by reason (this run)");
    for (int i = 0; i < CD_STATUS_MEMPOOL_REASONS; i++)
        evbuffer_add_printf(b, "conduitd_mempool_refused_total{reason=\"%s\"} %" PRIu64 "\n",
                            cd_status_mempool_reasons[i], st->mempool_refused[i]);
    if (st->tip_time > 0)
        gauge(b, "conduitd_tip_time_seconds",
              "Header time of the best-chain block at the progress height (indexed tip, or "
              "stored tip without the index)",
              (double)st->tip_time);
    if (st->header_time > 0)
        gauge(b, "conduitd_header_time_seconds", "Header time of the best header",
              (double)st->header_time);
    if (st->progress_tx >= 0)
        gauge(b, "conduitd_sync_progress_transactions_estimated_ratio",
              "Share of the chain's transactions up to the progress height, estimated from the "
              "known chain totals (mainnet, testnet)",
              st->progress_tx);
    /* the figures of the last catch-up weighing (cd_catchup_weigh): catch-up
     * mode when backlog >= catchup_ratio_pct of indexed (the status's
     * index_why says it in words) */
    if (st->index_indexed_txs >= 0) {
        gauge(b, "conduitd_index_backlog_transactions_estimated",
              "Transactions of the backlog at the last catch-up decision, estimated from the last "
              "indexed blocks",
              st->index_backlog_txs);
        gauge(b, "conduitd_index_indexed_transactions",
              "Transactions in the index at the last catch-up decision (what a rebuild sorts)",
              st->index_indexed_txs);
    }
    /* height-range partitions (sql/017): what a lookup by hash probes, and
     * how full the open tip is against partition_txs */
    if (st->partitions > 0) {
        gauge(b, "conduitd_index_partitions",
              "Partitions of each row table (transactions, inputs, pushdata, outputs)",
              (double)st->partitions);
        gauge(b, "conduitd_index_partition_tip_transactions",
              "Transactions in the open tip partition at the last look",
              (double)st->partition_tip_txs);
        counter(b, "conduitd_index_partition_rolls_total",
                "Tip partitions closed (cd_partition_roll) by this run", st->partition_rolls);
        counter(b, "conduitd_index_partition_merges_total",
                "Merges of closed partitions swapped in (sql/019) by this run",
                st->partition_merges);
        gauge(b, "conduitd_index_partition_merging",
              "1 while partitions are being copied to be merged, else 0",
              st->partition_merging >= 0 ? 1.0 : 0.0);
    }
    if (st->n_peer > 0) {
        head(b, "conduitd_peer_start_height", "gauge",
             "Height each connected peer announced when it connected");
        for (uint32_t i = 0; i < st->n_peer; i++) {
            evbuffer_add_printf(b, "conduitd_peer_start_height{peer=\"");
            label_value(b, st->peer[i].addr);
            evbuffer_add_printf(b, "\"} %" PRId32 "\n", st->peer[i].height);
        }
    }
}

void cd_http_metrics(http_srv *s, struct evhttp_request *req)
{
    cd_status st;
    struct evbuffer *b = evbuffer_new();
    int have = cd_status_read(s->cfg->datadir, &st) == 0;
    int alive = have && cd_status_pid_alive(&st) && strcmp(st.state, "stopped") != 0;
    gauge(b, "conduitd_up", "1 if the daemon that wrote the status file is running", alive);
    if (have) {
        head(b, "conduitd_info", "gauge", "Version, network, state and index mode, as labels");
        evbuffer_add_printf(b, "conduitd_info{version=\"");
        label_value(b, st.version);
        evbuffer_add_printf(b, "\",network=\"");
        label_value(b, st.network);
        evbuffer_add_printf(b, "\",state=\"");
        label_value(b, st.state);
        evbuffer_add_printf(b, "\",index_mode=\"");
        label_value(b, st.index_mode);
        evbuffer_add_printf(b, "\"} 1\n");
        gauge(b, "conduitd_start_time_seconds", "When the daemon started (unix seconds)",
              (double)st.started_at);
        gauge(b, "conduitd_status_updated_time_seconds",
              "When these figures were taken (unix seconds; every status_interval)",
              (double)st.updated_at);
        gauge(b, "conduitd_header_height", "Height of the best header (-1: none)",
              st.header_height);
        gauge(b, "conduitd_stored_height", "Best-chain blocks stored and verified up to (-1: none)",
              st.stored_height);
        gauge(b, "conduitd_indexed_height", "Best-chain blocks indexed in PostgreSQL up to (-1: none)",
              st.indexed_height);
        gauge(b, "conduitd_peers", "Connected peers (handshake done)", st.peers);
        gauge(b, "conduitd_workers_alive", "Worker processes running", st.workers_alive);
        gauge(b, "conduitd_workers", "Worker processes configured", st.workers_total);
        gauge(b, "conduitd_ring_used_bytes", "Bytes in use in the shared-memory block ring",
              (double)st.ring_used);
        gauge(b, "conduitd_ring_size_bytes", "Size of the shared-memory block ring",
              (double)st.ring_size);
        counter(b, "conduitd_blocks_processed_total", "Blocks processed by this run",
                st.blocks_done);
        counter(b, "conduitd_block_bytes_processed_total", "Block bytes processed by this run",
                st.bytes_done);
        counter(b, "conduitd_transactions_processed_total", "Transactions processed by this run",
                st.txs_done);
        gauge(b, "conduitd_blocks_per_second", "Block rate over the last status intervals",
              st.blocks_per_s);
        gauge(b, "conduitd_block_bytes_per_second", "Block byte rate over the last status intervals",
              st.mb_per_s * 1e6);
        gauge(b, "conduitd_transactions_per_second",
              "Transaction rate over the last status intervals", st.tx_per_s);
        if (st.eta_s >= 0)
            gauge(b, "conduitd_sync_eta_seconds", "Estimated time to reach the best header",
                  st.eta_s);
        if (st.n_peer > 0) {
            head(b, "conduitd_peer_received_bytes_total", "counter",
                 "Bytes received from each connected peer (this connection)");
            for (uint32_t i = 0; i < st.n_peer; i++) {
                evbuffer_add_printf(b, "conduitd_peer_received_bytes_total{peer=\"");
                label_value(b, st.peer[i].addr);
                evbuffer_add_printf(b, "\"} %" PRIu64 "\n", st.peer[i].bytes_in);
            }
            head(b, "conduitd_peer_sent_bytes_total", "counter",
                 "Bytes sent to each connected peer (this connection)");
            for (uint32_t i = 0; i < st.n_peer; i++) {
                evbuffer_add_printf(b, "conduitd_peer_sent_bytes_total{peer=\"");
                label_value(b, st.peer[i].addr);
                evbuffer_add_printf(b, "\"} %" PRIu64 "\n", st.peer[i].bytes_out);
            }
        }
        from_status(b, &st);
        if (alive)
            memory(b, (long)st.pid);
    }
    from_pg(s, b);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Cache-Control", "no-store");
    cd_http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", b);
    evbuffer_free(b);
}

/* ---- the metrics server (metrics_listen) ----
 *
 * Why a process of its own: Prometheus scrapes on its own schedule and the
 * endpoint must answer while the API is off, busy or restarting, and be
 * bindable elsewhere (loopback by default) than the public API. One evhttp
 * loop, no LMDB, its own PostgreSQL session (the same reconnect rules as
 * the API's, cd_http_srv_pg). */

static void metrics_request(struct evhttp_request *req, void *arg)
{
    http_srv *s = arg;
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (!path || strcmp(path, "/metrics") != 0) {
        cd_http_reply_error(req, 404, "only /metrics is served here");
        return;
    }
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        cd_http_reply_error(req, 405, "/metrics answers GET and HEAD");
        return;
    }
    if (evhttp_uri_get_query(u) != NULL) {
        cd_http_reply_error_code(req, 400, "unknown_parameter", "/metrics takes no parameters");
        return;
    }
    cd_http_metrics(s, req);
}

int cd_http_metrics_run(const cd_config *cfg, int listen_fd, int chan_fd)
{
    http_srv s;
    memset(&s, 0, sizeof(s));
    s.cfg = cfg;
    s.proc = -1;
    s.base = event_base_new();
    s.http = s.base ? evhttp_new(s.base) : NULL;
    evutil_make_socket_nonblocking(listen_fd);
    if (!s.http || !evhttp_accept_socket_with_handle(s.http, listen_fd)) {
        cd_log_error("metrics: cannot serve on the listening socket");
        return CD_EXIT_FAILURE;
    }
    evhttp_set_timeout(s.http, 30);
    evhttp_set_max_headers_size(s.http, 8192);
    evhttp_set_max_body_size(s.http, 0);
    evhttp_set_allowed_methods(s.http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                           EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                           EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(s.http, metrics_request, &s);
    cd_child_exit *quit = cd_child_exit_install(s.base, chan_fd, "metrics");
    if (!quit)
        return CD_EXIT_FAILURE;
    cd_log_info("metrics: server serving (pid %d)", (int)getpid());
    event_base_dispatch(s.base);
    cd_log_info("metrics: stopping");
    evhttp_free(s.http);
    cd_child_exit_free(quit);
    if (s.pg)
        PQfinish(s.pg);
    event_base_free(s.base);
    close(chan_fd);
    return CD_EXIT_OK;
}
