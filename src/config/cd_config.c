/*
 * cd_config.c - the option table and everything it drives: defaults, the
 * parsing and formatting of each option's value, --help, the annotated
 * sample config and --print-config. Where a configuration comes from (the
 * config file, the command line, SIGHUP reload) is cd_config_load.c.
 *
 * Why one table: an option is declared once (name, type, default, bounds,
 * reloadable flag, field offset, help) and can then never be settable from
 * the file but not the command line, missing from --help, or out of sync
 * with conf/conduitd.conf (a unit test compares that file with
 * cd_config_write_sample()). Errors are one line naming where the bad text
 * came from (file:line or "command line") and the text itself.
 */
#include "cd_config.h"
#include "cd_config_int.h"

#include "cd_hostport.h"
#include "cd_util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cd_build.h" /* CD_VERSION */

/* ------------------------------------------------------------------------ */
/* The table                                                                */
/* ------------------------------------------------------------------------ */

static const char *const net_names[] = {"main", "test", "regtest", "stn", NULL};
static const char *const level_names[] = {"error", "warn", "info", "debug", NULL};
static const char *const catchup_names[] = {"auto", "live", NULL}; /* CD_CATCHUP_* */
static const char *const mempool_req_names[] = {"auto", "always", "never",
                                                NULL}; /* CD_MEMPOOL_REQ_* */

#define OFF(f) offsetof(cd_config, f)
#define KB     (UINT64_C(1) << 10)
#define MB     (UINT64_C(1) << 20)
#define GB     (UINT64_C(1) << 30)

/* Kept in the order the sample config presents them. */
const cd_option cd_config_options[] = {
    {"network", CD_OPT_ENUM, "main", 0, 0, 0, OFF(net), net_names,
     "BSV network: main, test, regtest or stn (same as --mainnet/--testnet/--regtest/--stn)"},
    {"connect", CD_OPT_LIST, "", 0, 0, 0, OFF(connect), NULL,
     "peer to connect to as host[:port] (repeatable; none: 127.0.0.1 on the network's port)"},
    {"datadir", CD_OPT_STRING, "", 0, 0, 0, OFF(datadir), NULL,
     "data directory for LMDB stores and the status file (empty: $HOME/.conduitd/<network>)"},
    {"index", CD_OPT_BOOL, "on", 0, 0, 0, OFF(index), NULL,
     "index transactions into PostgreSQL (off: headers and raw blocks only, no database needed)"},
    {"pg_conninfo", CD_OPT_STRING, "", 0, 0, CD_OPT_SECRET, OFF(pg_conninfo), NULL,
     "libpq connection string (empty: the PGHOST/PGPORT/PGUSER/PGDATABASE/... defaults)"},
    {"ring_size", CD_OPT_SIZE, "512M", 16 * MB, 1024 * GB, 0, OFF(ring_size), NULL,
     "size of the shared-memory block ring (K/M/G/T suffixes)"},
    {"unit_size", CD_OPT_SIZE, "32M", 64 * KB, 4 * GB, 0, OFF(unit_size), NULL,
     "target size of a work unit handed to a parser"},
    {"parser_workers", CD_OPT_INT, "0", 0, CD_CONFIG_MAX_PARSER_WORKERS, 0, OFF(parser_workers),
     NULL, "number of parser processes (0: one per CPU core, at most the range's maximum)"},
    {"catchup_indexes", CD_OPT_ENUM, "auto", 0, 0, 0, OFF(catchup_indexes), catchup_names,
     "auto: drop the secondary indexes (tx_hash, outpoint, pushdata, script hash) while far "
     "behind (catchup_threshold, catchup_ratio_pct) and rebuild them once within "
     "catchup_threshold (3x faster load; lookups by hash slow meanwhile); live: always keep them"},
    {"catchup_threshold", CD_OPT_INT, "1000", 1, 0x7fffffffu, 0, OFF(catchup_threshold), NULL,
     "blocks behind the best header above which catchup_indexes=auto may drop the indexes"},
    /* the rebuild at the end of catch-up is over the whole tables: on a
     * large index a short outage costs more to rebuild than it saves
     * (docs/PERFORMANCE.md "Growth: when to drop" derives the default) */
    {"catchup_ratio_pct", CD_OPT_INT, "20", 0, 100000, 0, OFF(catchup_ratio_pct), NULL,
     "catchup_indexes=auto drops the indexes only if the backlog's transactions (estimated from "
     "the last indexed blocks) are at least this percent of those already indexed (an empty "
     "index always drops; 0: the block threshold alone)"},
    /* 10M: the tip's B-trees stay those of a 10M-tx table (live PG CPU per
     * 1000 tx flat from there on) while a lookup by hash probes at most 10
     * partitions up to 10^8 txs (100 at 10^9: too many for custom plans;
     * docs/PERFORMANCE.md "Height-range partitions", OPERATIONS.md) */
    {"partition_txs", CD_OPT_INT, "10000000", 0, 0x7fffffffu, 0, OFF(partition_txs), NULL,
     "close the open tip partition of transactions, inputs, pushdata and outputs once it holds "
     "this many transactions (a new empty tip takes the next blocks: live inserts touch small "
     "B-trees; every partition costs lookups by hash a probe); 0: never (one partition)"},
    /* 8: with the 10M tip, 4 partitions at 10^8 txs and 10 at 10^9 (11 and
     * 101 unmerged), each row copied once per level it climbs (twice by 10^9);
     * a larger fan-in copies less often but keeps up to fan-in - 1 per
     * level (docs/OPERATIONS.md "Merging partitions"). 1 is refused in
     * cd_config_finish: a merge of one partition into itself */
    {"partition_merge", CD_OPT_INT, "8", 0, CD_CONFIG_MAX_PARTITION_MERGE, 0, OFF(partition_merge),
     NULL,
     "merge this many adjacent closed partitions of one level into one of the next level, the "
     "oldest first (a copy in the background, then a short swap: keeps the partition count, "
     "which every lookup by hash probes, logarithmic in the index's size); 0: never merge"},
    /* off by default: the derived rows cost ~3 kB of disk per tx (2.5x the
     * rest of the index) and 2.5-4x live indexing's PostgreSQL CPU, and the
     * step derives 1-3k tx/s, far below an initial sync's rate: a trade for
     * the deployments that page through big keys, not for every one */
    {"key_rows", CD_OPT_BOOL, "off", 0, 0, 0, OFF(key_rows), NULL,
     "run the key-rows process: derives per-key rows behind the indexed tip so that a history "
     "page of a key costs in proportion to the page (about 3 kB of disk per tx and 2.5-4x "
     "the PostgreSQL CPU of indexing: docs/PERFORMANCE.md \"Key rows\"); off: pages scan all "
     "the key's rows, same results"},
    {"blocks_per_peer", CD_OPT_INT, "16", 1, 1024, CD_OPT_RELOADABLE, OFF(blocks_per_peer), NULL,
     "blocks requested from one peer at a time"},
    {"block_timeout", CD_OPT_INT, "120", 5, 86400, CD_OPT_RELOADABLE, OFF(block_timeout_s), NULL,
     "seconds before a requested block is asked from another peer"},
    {"block_min_rate", CD_OPT_INT, "16384", 0, 0x7fffffffu, 0, OFF(block_min_rate), NULL,
     "bytes per second a block must arrive at once block_rate_grace seconds of reading have "
     "passed; a slower peer is disconnected and banned and the block asked from another (0: off)"},
    {"block_rate_grace", CD_OPT_INT, "10", 1, 3600, 0, OFF(block_rate_grace_s), NULL,
     "seconds of reading a block before block_min_rate applies"},
    {"block_checksum", CD_OPT_BOOL, "off", 0, 0, 0, OFF(block_checksum), NULL,
     "also verify the p2p message checksum of blocks (off: every block byte is already checked: "
     "header hash, canonical tx count, exact length and the merkle root; the checksum would cost "
     "one more SHA-256 pass over each block, about a third of the receive rate)"},
    {"serve_block_check", CD_OPT_BOOL, "on", 0, 0, 0, OFF(serve_block_check), NULL,
     "re-hash a stored block against its header's merkle root before /v1/block or conduit-cli "
     "block serves it, so a bit flipped on disk is refused (one SHA-256d pass over the block; "
     "docs/PERFORMANCE.md)"},
    {"relay", CD_OPT_BOOL, "on", 0, 0, 0, OFF(relay), NULL,
     "ask peers to announce mempool transactions"},
    {"index_data_pushes", CD_OPT_BOOL, "on", 0, 0, 0, OFF(index_data_pushes), NULL,
     "also index pushes inside OP_RETURN data-carrier outputs (DATA flag)"},
    {"max_data_push", CD_OPT_INT, "65536", 0, 0xffffffffu, 0, OFF(max_data_push), NULL,
     "longest data-carrier push (bytes) whose hash is indexed"},
    {"mempool_max_txs", CD_OPT_INT, "1000000", 1, 0xffffffffu, 0, OFF(mempool_max_txs), NULL,
     "most mempool transactions kept in the index (oldest evicted first)"},
    {"mempool_max_bytes", CD_OPT_SIZE, "1000000000", 1 * MB, 1024 * GB, 0, OFF(mempool_max_bytes),
     NULL,
     "most bytes of mempool transactions kept in the index (oldest evicted first; default: the "
     "node's -maxmempool, 1000 MB)"},
    {"mempool_max_tx_size", CD_OPT_SIZE, "10000000", 1 * KB, 4 * GB, 0, OFF(mempool_max_tx_size),
     NULL,
     "largest relayed transaction taken into the mempool tables (default: the node's "
     "-maxtxsizepolicy, 10 MB)"},
    {"mempool_expiry", CD_OPT_INT, "336", 1, 1000000, 0, OFF(mempool_expiry_h), NULL,
     "hours after which a mempool transaction is expired (the node's -mempoolexpiry)"},
    {"mempool_request", CD_OPT_ENUM, "auto", 0, 0, 0, OFF(mempool_request), mempool_req_names,
     "auto: ask a node for its whole mempool only once a short probe connection showed that it "
     "allows it (refusals remembered in the data directory); always: ask every node; never: "
     "index relayed transactions only"},
    {"mempool_sync_interval", CD_OPT_INT, "600", 0, 86400, 0, OFF(mempool_sync_interval_s), NULL,
     "seconds between snapshots of an allowing node's mempool that evict what it no longer has "
     "and fetch what is missing (0: only after a reorg and a (re)connect)"},
    {"mempool_sync_grace", CD_OPT_INT, "60", 0, 86400, 0, OFF(mempool_sync_grace_s), NULL,
     "seconds a mempool transaction is kept even if a node's snapshot lacks it (txs in flight)"},
    {"mempool_evicted_keep", CD_OPT_INT, "24", 1, 100000, 0, OFF(mempool_evicted_keep_h), NULL,
     "hours the mempool_evicted table keeps the record of a removed mempool transaction"},
    {"events_keep", CD_OPT_INT, "168", 1, 100000, 0, OFF(events_keep_h), NULL,
     "hours the event log (table events: the resume point of event streams and webhooks) keeps "
     "an event"},
    {"log_level", CD_OPT_ENUM, "info", 0, 0, CD_OPT_RELOADABLE, OFF(log_level), level_names,
     "error, warn, info or debug"},
    {"log_file", CD_OPT_STRING, "", 0, 0, CD_OPT_RELOADABLE | CD_OPT_EMPTY_NULL, OFF(log_file),
     NULL, "append log lines to this file, reopened on SIGHUP (empty: stderr / journald)"},
    {"user_agent", CD_OPT_STRING, "/conduitd:" CD_VERSION "/", 0, 0, 0, OFF(user_agent), NULL,
     "user agent sent to peers in the version message"},
    {"status_interval", CD_OPT_INT, "10", 1, 3600, CD_OPT_RELOADABLE, OFF(status_interval_s), NULL,
     "seconds between progress lines and status file updates"},
    {"http_listen", CD_OPT_STRING, "", 0, 0, 0, OFF(http_listen), NULL,
     "HTTP API address:port, e.g. 127.0.0.1:8085 (empty: off; port 0: any free port); "
     "reads need no authentication (only the ARC broadcast routes need api_keys): keep it on "
     "loopback or behind a proxy"},
    {"api_keys", CD_OPT_STRING, "", 0, 0, CD_OPT_EMPTY_NULL | CD_OPT_KEYS, OFF(api_keys), NULL,
     "comma-separated keys a client sends as 'Authorization: Bearer <key>' to use the HTTP "
     "API's write routes (POST /arc/v1/tx, /arc/v1/txs; /v1/webhooks); empty: writes are "
     "refused"},
    {"http_client_limit", CD_OPT_INT, "3", 0, 1000, 0, OFF(http_client_limit), NULL,
     "HTTP requests one client address may have in progress at once (the API has 4 server "
     "processes); more get 503 (0: no limit, e.g. behind a proxy that limits clients itself)"},
    {"http_cors_origins", CD_OPT_STRING, "", 0, 0, 0, OFF(http_cors_origins), NULL,
     "origins whose browser pages may read the HTTP API (CORS), separated by spaces or commas, "
     "e.g. https://app.example.com; * allows any; empty: none"},
    /* push notifications: GET /v1/events (SSE) and /v1/ws (docs/EVENTS.md) */
    {"events_max_conns", CD_OPT_INT, "2000", 0, 100000, 0, OFF(events_max_conns), NULL,
     "event streams (/v1/events, /v1/ws) each HTTP server process holds at once (there are 4); "
     "more get 503 (0: the event routes are off)"},
    {"events_max_keys", CD_OPT_INT, "1000", 1, 100000, 0, OFF(events_max_keys), NULL,
     "keys plus outpoints one event stream may subscribe to"},
    {"events_max_output", CD_OPT_SIZE, "1M", 4 * KB, 1 * GB, 0, OFF(events_max_output), NULL,
     "bytes queued to one event stream's client; while full, the stream waits (replaying from "
     "the log when it drains)"},
    {"events_max_message", CD_OPT_SIZE, "128K", 1 * KB, 16 * MB, 0, OFF(events_max_message), NULL,
     "largest message a websocket client may send (/v1/ws; a subscribe with events_max_keys "
     "keys fits); larger: close 1009"},
    {"events_stall_timeout", CD_OPT_INT, "30", 1, 86400, 0, OFF(events_stall_s), NULL,
     "seconds an event stream's client may leave its output full (not reading) before it is "
     "cut off (SSE: event: error; websocket: close 1008)"},
    {"events_ping_interval", CD_OPT_INT, "30", 1, 3600, 0, OFF(events_ping_s), NULL,
     "seconds between keep-alives on an idle event stream (SSE comment, websocket ping); a "
     "websocket silent for twice as long is dropped"},
    {"events_sub_idle", CD_OPT_INT, "86400", 60, 365 * 86400, 0, OFF(events_sub_idle_s), NULL,
     "seconds a key/outpoint subscription is kept (its keys watched, events recorded) after its "
     "last client went away; then it expires"},
    {"metrics_listen", CD_OPT_STRING, "", 0, 0, 0, OFF(metrics_listen), NULL,
     "Prometheus metrics (GET /metrics) on their own port, apart from the HTTP API: "
     "address:port, or a port alone for 127.0.0.1:port, e.g. 9490 (empty: off); a "
     "non-loopback address also needs metrics_allow_remote = on"},
    {"metrics_allow_remote", CD_OPT_BOOL, "off", 0, 0, 0, OFF(metrics_allow_remote), NULL,
     "let metrics_listen bind an address other than loopback (the metrics name the peers and "
     "show the sync state: serve them only to your monitoring network)"},
    {"webhooks", CD_OPT_BOOL, "on", 0, 0, 0, OFF(webhooks), NULL,
     "run the webhook delivery process (POST /v1/webhooks registrations; docs/WEBHOOKS.md); "
     "off: events are still recorded and delivered once it is on again"},
    {"webhook_timeout", CD_OPT_INT, "10", 1, 300, 0, OFF(webhook_timeout_s), NULL,
     "seconds a webhook receiver has to connect and answer one delivery"},
    {"webhook_retry_max", CD_OPT_INT, "600", 1, 86400, 0, OFF(webhook_retry_max_s), NULL,
     "longest wait in seconds between retries of a failed webhook delivery (the back-off "
     "doubles from 1 s up to this; 4xx answers back off from 60 s)"},
    {"webhook_failing_after", CD_OPT_INT, "10", 1, 1000000, 0, OFF(webhook_failing_after), NULL,
     "failed attempts in a row after which a webhook registration is shown as failing (it is "
     "still retried and loses nothing)"},
    {"conduitdb_reference_url", CD_OPT_STRING, "", 0, 0, CD_OPT_EMPTY_NULL,
     OFF(conduitdb_reference_url), NULL,
     "ConduitDB's reference server (ConduitDB's REFERENCE_SERVER_SCHEME://HOST:PORT, e.g. "
     "http://127.0.0.1:47126): the webhook process POSTs every tip-filter match to "
     "<url>/api/v1/tip-filter/matches, as ConduitDB does; http:// only (no TLS client); "
     "empty: off"},
};
const size_t cd_config_n_options = CD_ARRAY_LEN(cd_config_options);

/* ------------------------------------------------------------------------ */
/* helpers                                                                  */
/* ------------------------------------------------------------------------ */

void cd_config_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

char **cd_config_str_field(cd_config *cfg, const cd_option *o)
{
    return (char **)(void *)((char *)cfg + o->offset);
}

static size_t *list_count(cd_config *cfg, const cd_option *o)
{
    (void)o; /* the only list is connect */
    return &cfg->n_connect;
}

void cd_config_list_clear(cd_config *cfg, const cd_option *o)
{
    char **items = cd_config_str_field(cfg, o);
    size_t *n = list_count(cfg, o);
    for (size_t i = 0; i < *n; i++) {
        free(items[i]);
        items[i] = NULL;
    }
    *n = 0;
}

const cd_option *cd_config_find(const char *name)
{
    for (size_t i = 0; i < cd_config_n_options; i++)
        if (strcmp(cd_config_options[i].name, name) == 0)
            return &cd_config_options[i];
    return NULL;
}

int cd_config_parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"on", "yes", "true", "1"};
    static const char *const no[] = {"off", "no", "false", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

static int parse_u64(const char *s, uint64_t *out, const char **end)
{
    if (!isdigit((unsigned char)s[0]))
        return -1;
    errno = 0;
    char *e;
    unsigned long long v = strtoull(s, &e, 10);
    if (errno == ERANGE)
        return -1;
    *out = (uint64_t)v;
    *end = e;
    return 0;
}

/* "512M", "4G", "65536", "1.5G" is not accepted (integers only). */
static int parse_size(const char *s, uint64_t *out)
{
    uint64_t v;
    const char *e;
    if (parse_u64(s, &v, &e) < 0)
        return -1;
    uint64_t mul = 1;
    switch (toupper((unsigned char)*e)) {
    case 'K':
        mul = KB;
        e++;
        break;
    case 'M':
        mul = MB;
        e++;
        break;
    case 'G':
        mul = GB;
        e++;
        break;
    case 'T':
        mul = 1024 * GB;
        e++;
        break;
    default:
        break;
    }
    if (mul > 1 && (*e == 'i' || *e == 'I'))
        e++;
    if (*e == 'B' || *e == 'b')
        e++;
    if (*e != '\0')
        return -1;
    if (v > UINT64_MAX / mul)
        return -1;
    *out = v * mul;
    return 0;
}

void cd_config_format_size(uint64_t v, char *buf, size_t len)
{
    static const char suffix[] = "KMGT";
    int s = -1;
    while (v >= 1024 && v % 1024 == 0 && s < 3) {
        v /= 1024;
        s++;
    }
    if (s < 0)
        snprintf(buf, len, "%llu", (unsigned long long)v);
    else
        snprintf(buf, len, "%llu%c", (unsigned long long)v, suffix[s]);
}

/* host[:port], [v6addr][:port], or a bare IPv6 address. */
/* connect: an address of cd_hostport.h; a port, if given, is 1..65535. */
static int check_peer(const char *s)
{
    char host[CD_HOSTPORT_MAX];
    int port;
    if (cd_hostport_parse(s, host, sizeof(host), &port) != 0 || port == 0)
        return -1;
    return 0;
}

/* http_listen: host:port or [v6addr]:port with an explicit port 0..65535
 * (the address itself is resolved when conduitd binds it). */
/* conduitdb_reference_url: an http:// base URL the delivery appends
 * /api/v1/tip-filter/matches to (src/api/cd_http_hooks_cdb.c). The same
 * rules as a webhook receiver's URL (cd_hook_url_check: no TLS client, no
 * user info, no fragment), and no query (the path is appended).
 * Returns: NULL if acceptable, else why not (a static sentence). */
static const char *check_base_url(const char *v)
{
    if (strlen(v) > 1900)
        return "too long (at most 1900 bytes)";
    if (!strncasecmp(v, "https://", 8))
        return "https:// is not supported (the delivery has no TLS client): use http:// to a "
               "server on a trusted network, or a local TLS-terminating proxy";
    if (strncasecmp(v, "http://", 7) != 0)
        return "expected http://host[:port][/path]";
    const char *host = v + 7;
    size_t alen = strcspn(host, "/?#");
    if (alen == 0)
        return "no host";
    if (memchr(host, '@', alen))
        return "user:password@ is not supported";
    if (strchr(v, '#') || strchr(v, '?'))
        return "no #fragment or ?query (the path /api/v1/tip-filter/matches is appended)";
    for (const char *c = v; *c; c++)
        if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f)
            return "spaces and control or non-ASCII bytes are not allowed";
    const char *end = host + alen, *colon = NULL;
    if (host[0] == '[') { /* [v6]:port */
        const char *rb = memchr(host, ']', alen);
        if (!rb || rb == host + 1)
            return "bad [IPv6] host";
        if (rb + 1 < end && rb[1] != ':')
            return "bad [IPv6] host";
        colon = rb + 1 < end ? rb + 1 : NULL;
    } else {
        colon = memchr(host, ':', alen);
        if (colon == host)
            return "no host";
    }
    if (colon) {
        long port = 0;
        const char *p = colon + 1;
        if (p == end)
            return "empty port";
        for (; p < end; p++) {
            if (*p < '0' || *p > '9' || port > 65535)
                return "bad port";
            port = port * 10 + (*p - '0');
        }
        if (port < 1 || port > 65535)
            return "bad port";
    }
    return NULL;
}

static int check_listen(const char *s)
{
    char host[CD_HOSTPORT_MAX];
    int port;
    if (cd_hostport_parse(s, host, sizeof(host), &port) != 0 || port < 0)
        return -1;
    return 0;
}

int cd_config_port_only(const char *s)
{
    if (*s == '\0' || strlen(s) > 5)
        return -1;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return -1;
    int v = atoi(s);
    return v <= 65535 ? v : -1;
}

/* ------------------------------------------------------------------------ */
/* set / get                                                                */
/* ------------------------------------------------------------------------ */

int cd_config_set_option(cd_config *cfg, const cd_option *o, const char *value, char *err,
                         size_t errlen)
{
    char *base = (char *)cfg;
    switch (o->type) {
    case CD_OPT_BOOL: {
        int b;
        if (cd_config_parse_bool(value, &b) < 0) {
            cd_config_seterr(err, errlen, "%s expects on/off", o->name);
            return -1;
        }
        memcpy(base + o->offset, &b, sizeof(b));
        return 0;
    }
    case CD_OPT_INT: {
        uint64_t v;
        const char *e;
        if (parse_u64(value, &v, &e) < 0 || *e != '\0') {
            cd_config_seterr(err, errlen, "%s expects a whole number", o->name);
            return -1;
        }
        if (v < o->min || v > o->max) {
            cd_config_seterr(err, errlen, "%s out of range %llu..%llu", o->name,
                             (unsigned long long)o->min, (unsigned long long)o->max);
            return -1;
        }
        uint32_t u = (uint32_t)v;
        memcpy(base + o->offset, &u, sizeof(u));
        return 0;
    }
    case CD_OPT_SIZE: {
        uint64_t v;
        if (parse_size(value, &v) < 0) {
            cd_config_seterr(err, errlen, "%s expects a size like 512M or 4G", o->name);
            return -1;
        }
        if (v < o->min || v > o->max) {
            char lo[32], hi[32];
            cd_config_format_size(o->min, lo, sizeof(lo));
            cd_config_format_size(o->max, hi, sizeof(hi));
            cd_config_seterr(err, errlen, "%s out of range %s..%s", o->name, lo, hi);
            return -1;
        }
        memcpy(base + o->offset, &v, sizeof(v));
        return 0;
    }
    case CD_OPT_STRING: {
        char **f = cd_config_str_field(cfg, o);
        if (strlen(value) > 4096) {
            cd_config_seterr(err, errlen, "%s is too long", o->name);
            return -1;
        }
        if (o->offset == OFF(http_listen) && value[0] != '\0' && check_listen(value) < 0) {
            cd_config_seterr(err, errlen, "%s expects address:port, e.g. 127.0.0.1:8085", o->name);
            return -1;
        }
        if (o->offset == OFF(metrics_listen) && value[0] != '\0' &&
            check_listen(value) < 0 && cd_config_port_only(value) < 0) {
            cd_config_seterr(err, errlen, "%s expects address:port or a port, e.g. 9490", o->name);
            return -1;
        }
        const char *why = NULL;
        if (o->offset == OFF(conduitdb_reference_url) && value[0] != '\0' &&
            (why = check_base_url(value)) != NULL) {
            cd_config_seterr(err, errlen, "%s %s: %s", o->name, value, why);
            return -1;
        }
        if (o->offset == OFF(log_file) && value[0] != '\0' && value[strlen(value) - 1] == '/') {
            cd_config_seterr(err, errlen, "%s must name a file, not a directory", o->name);
            return -1;
        }
        free(*f);
        *f = (value[0] == '\0' && (o->flags & CD_OPT_EMPTY_NULL)) ? NULL : cd_xstrdup(value);
        return 0;
    }
    case CD_OPT_ENUM: {
        if (o->offset == OFF(net)) {
            const btc_net *n = btc_net_by_name(value);
            if (n == NULL) {
                cd_config_seterr(err, errlen, "%s expects main, test, regtest or stn", o->name);
                return -1;
            }
            cfg->net = n;
            return 0;
        }
        for (int i = 0; o->enum_names[i]; i++) {
            if (strcasecmp(value, o->enum_names[i]) == 0) {
                memcpy(base + o->offset, &i, sizeof(i));
                return 0;
            }
        }
        if (o->offset == OFF(log_level)) {
            cd_log_level l;
            if (cd_log_level_parse(value, &l) == 0) {
                cfg->log_level = l;
                return 0;
            }
        }
        char names[128] = "";
        for (int i = 0; o->enum_names[i]; i++) {
            if (i)
                strncat(names, ", ", sizeof(names) - strlen(names) - 1);
            strncat(names, o->enum_names[i], sizeof(names) - strlen(names) - 1);
        }
        cd_config_seterr(err, errlen, "%s expects one of %s", o->name, names);
        return -1;
    }
    case CD_OPT_LIST: {
        if (value[0] == '\0') { /* "connect =" clears the list */
            cd_config_list_clear(cfg, o);
            return 0;
        }
        if (check_peer(value) < 0) {
            cd_config_seterr(err, errlen, "%s expects host[:port] with a port 1..65535", o->name);
            return -1;
        }
        size_t *n = list_count(cfg, o);
        if (*n >= CD_CONFIG_MAX_CONNECT) {
            cd_config_seterr(err, errlen, "too many %s entries (at most %d)", o->name,
                             CD_CONFIG_MAX_CONNECT);
            return -1;
        }
        cd_config_str_field(cfg, o)[(*n)++] = cd_xstrdup(value);
        return 0;
    }
    }
    cd_config_seterr(err, errlen, "internal: bad option type");
    return -1;
}

int cd_config_set(cd_config *cfg, const char *key, const char *value, char *err, size_t errlen)
{
    const cd_option *o = cd_config_find(key);
    if (o == NULL) {
        cd_config_seterr(err, errlen, "unknown option");
        return -1;
    }
    return cd_config_set_option(cfg, o, value, err, errlen);
}

/* ---- secrets ---- */

/* Appends n bytes of p to out (at *w, keeping room for the NUL). */
static void put(char *out, size_t len, size_t *w, const char *p, size_t n)
{
    while (n-- > 0 && *w + 1 < len)
        out[(*w)++] = *p++;
}

/* The URI form: the password of the user info, and password= parameters.
 * libpq: "postgresql://[userspec@][hostspec][/dbname][?paramspec]"
 * (PostgreSQL docs, "Connection URIs"). */
static void mask_uri(const char *s, char *out, size_t len, size_t *w)
{
    const char *auth = strstr(s, "://") + 3;
    put(out, len, w, s, (size_t)(auth - s));
    size_t alen = strcspn(auth, "/?");
    const char *at = NULL;
    for (const char *p = auth; p < auth + alen; p++)
        if (*p == '@')
            at = p; /* the last '@': a password may hold an unescaped one */
    if (at != NULL) {
        const char *colon = memchr(auth, ':', (size_t)(at - auth));
        if (colon != NULL) {
            put(out, len, w, auth, (size_t)(colon + 1 - auth));
            put(out, len, w, "***", 3);
            auth = at;
        }
    }
    const char *q = strchr(auth, '?');
    if (q == NULL) {
        put(out, len, w, auth, strlen(auth));
        return;
    }
    put(out, len, w, auth, (size_t)(q + 1 - auth));
    for (const char *p = q + 1; *p;) {
        size_t plen = strcspn(p, "&");
        if (plen >= 9 && strncasecmp(p, "password=", 9) == 0) {
            put(out, len, w, p, 9);
            put(out, len, w, "***", 3);
        } else {
            put(out, len, w, p, plen);
        }
        p += plen;
        if (*p == '&')
            put(out, len, w, p++, 1);
    }
}

/* The key = value form: keywords, '=', values bare or in single quotes with
 * backslash escapes (PostgreSQL docs, "Keyword/Value Connection Strings"). */
static void mask_kv(const char *s, char *out, size_t len, size_t *w)
{
    const char *p = s;
    while (*p) {
        const char *ws = p;
        while (isspace((unsigned char)*p))
            p++;
        const char *key = p;
        while (*p && *p != '=' && !isspace((unsigned char)*p))
            p++;
        size_t klen = (size_t)(p - key);
        while (isspace((unsigned char)*p))
            p++;
        if (*p != '=') { /* not key=value: copy the rest unchanged */
            put(out, len, w, ws, strlen(ws));
            return;
        }
        p++;
        while (isspace((unsigned char)*p))
            p++;
        const char *val = p;
        if (*p == '\'') {
            for (p++; *p && *p != '\''; p++)
                if (*p == '\\' && p[1])
                    p++;
            if (*p == '\'')
                p++;
        } else {
            for (; *p && !isspace((unsigned char)*p); p++)
                if (*p == '\\' && p[1])
                    p++;
        }
        put(out, len, w, ws, (size_t)(val - ws));
        if (klen == 8 && strncmp(key, "password", 8) == 0)
            put(out, len, w, "***", 3);
        else
            put(out, len, w, val, (size_t)(p - val));
    }
}

void cd_config_mask_secret(const char *conninfo, char *out, size_t len)
{
    size_t w = 0;
    if (len == 0)
        return;
    if (conninfo != NULL) {
        if (strncmp(conninfo, "postgresql://", 13) == 0 ||
            strncmp(conninfo, "postgres://", 11) == 0)
            mask_uri(conninfo, out, len, &w);
        else
            mask_kv(conninfo, out, len, &w);
    }
    out[w] = '\0';
}

void cd_config_format_value(const cd_config *cfg, const cd_option *o, char *buf, size_t len)
{
    const char *base = (const char *)cfg;
    switch (o->type) {
    case CD_OPT_BOOL: {
        int b;
        memcpy(&b, base + o->offset, sizeof(b));
        snprintf(buf, len, "%s", b ? "on" : "off");
        return;
    }
    case CD_OPT_INT: {
        uint32_t u;
        memcpy(&u, base + o->offset, sizeof(u));
        snprintf(buf, len, "%u", u);
        return;
    }
    case CD_OPT_SIZE: {
        uint64_t v;
        memcpy(&v, base + o->offset, sizeof(v));
        cd_config_format_size(v, buf, len);
        return;
    }
    case CD_OPT_STRING: {
        const char *s;
        memcpy(&s, base + o->offset, sizeof(s));
        if ((o->flags & CD_OPT_KEYS) && s && *s) {
            /* secrets: never in a printed configuration or a reload log */
            unsigned n = 1;
            for (const char *p = s; *p; p++)
                n += *p == ',';
            snprintf(buf, len, "(hidden: %u key%s)", n, n == 1 ? "" : "s");
            return;
        }
        snprintf(buf, len, "%s", s ? s : "");
        return;
    }
    case CD_OPT_ENUM:
        if (o->offset == OFF(net)) {
            snprintf(buf, len, "%s", cfg->net ? cfg->net->name : "");
        } else {
            int i;
            memcpy(&i, base + o->offset, sizeof(i));
            snprintf(buf, len, "%s", o->enum_names[i]);
        }
        return;
    case CD_OPT_LIST: {
        buf[0] = '\0';
        for (size_t i = 0; i < cfg->n_connect; i++) {
            if (i)
                strncat(buf, " ", len - strlen(buf) - 1);
            strncat(buf, cfg->connect[i], len - strlen(buf) - 1);
        }
        return;
    }
    }
    buf[0] = '\0';
}

/* ------------------------------------------------------------------------ */
/* lifecycle                                                                */
/* ------------------------------------------------------------------------ */

void cd_config_src_free(cd_config_src *src)
{
    if (src == NULL)
        return;
    free(src->conf_file);
    for (size_t i = 0; i < src->n; i++) {
        free(src->keys[i]);
        free(src->values[i]);
    }
    free(src->keys);
    free(src->values);
    free(src);
}

void cd_config_init(cd_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < cd_config_n_options; i++) {
        const cd_option *o = &cd_config_options[i];
        char err[256];
        int rc = cd_config_set_option(cfg, o, o->def, err, sizeof(err));
        cd_assert(rc == 0); /* a bad default is a bug in the table */
    }
}

void cd_config_free(cd_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cd_config_n_options; i++) {
        const cd_option *o = &cd_config_options[i];
        if (o->type == CD_OPT_STRING) {
            char **f = cd_config_str_field(cfg, o);
            free(*f);
            *f = NULL;
        } else if (o->type == CD_OPT_LIST) {
            cd_config_list_clear(cfg, o);
        }
    }
    free(cfg->conf_file);
    cd_config_src_free(cfg->src);
    memset(cfg, 0, sizeof(*cfg));
}

/* ------------------------------------------------------------------------ */
/* help and sample                                                          */
/* ------------------------------------------------------------------------ */

static const char *type_word(const cd_option *o)
{
    switch (o->type) {
    case CD_OPT_BOOL:
        return "on|off";
    case CD_OPT_INT:
        return "N";
    case CD_OPT_SIZE:
        return "SIZE";
    case CD_OPT_STRING:
        return "TEXT";
    case CD_OPT_ENUM:
        return "WORD";
    case CD_OPT_LIST:
        return "HOST:PORT";
    }
    return "?";
}

static void describe(const cd_option *o, char *buf, size_t len)
{
    char lo[32], hi[32];
    buf[0] = '\0';
    switch (o->type) {
    case CD_OPT_INT:
        snprintf(buf, len, "range %llu..%llu", (unsigned long long)o->min,
                 (unsigned long long)o->max);
        break;
    case CD_OPT_SIZE:
        cd_config_format_size(o->min, lo, sizeof(lo));
        cd_config_format_size(o->max, hi, sizeof(hi));
        snprintf(buf, len, "size, range %s..%s", lo, hi);
        break;
    case CD_OPT_BOOL:
        snprintf(buf, len, "on or off");
        break;
    case CD_OPT_LIST:
        snprintf(buf, len, "repeatable, at most %d", CD_CONFIG_MAX_CONNECT);
        break;
    default:
        break;
    }
    if (o->flags & CD_OPT_RELOADABLE) {
        size_t n = strlen(buf);
        snprintf(buf + n, len - n, "%sreloaded on SIGHUP", n ? "; " : "");
    }
}

void cd_config_print_help(FILE *f, const char *prog)
{
    fprintf(f,
            "usage: %s [options]\n"
            "\n"
            "Indexes the Bitcoin SV block chain into LMDB and PostgreSQL.\n"
            "Options come from built-in defaults, then the config file, then the command line.\n"
            "The config file is --conf FILE, else the first found of <datadir>/conduitd.conf\n"
            "(with --datadir), $HOME/.conduitd/<network>/conduitd.conf,\n"
            "$HOME/.conduitd/conduitd.conf, " CD_SYSCONFDIR "/conduitd/conduitd.conf.\n"
            "\n"
            "  --conf FILE                read options from FILE ('key = value' lines)\n"
            "  --no-conf                  read no config file\n"
            "  --mainnet | --testnet | --regtest | --stn\n"
            "                             choose the network (same as --network NAME)\n"
            "  --print-config             print the effective configuration and exit\n"
            "  --sample-config            print the annotated sample config file and exit\n"
            "  --help, -h                 show this help\n"
            "  --version, -V              show the version\n"
            "\n"
            "Every option below is also a config-file key. Flags take '--name VALUE' or\n"
            "'--name=VALUE' (or bitcoind's '-name=VALUE'); on/off options also take '--name'\n"
            "and '--no-name'. In the file, regtest=1 / testnet=1 / stn=1 choose the network.\n"
            "\n",
            prog);
    for (size_t i = 0; i < cd_config_n_options; i++) {
        const cd_option *o = &cd_config_options[i];
        char flag[64], extra[128];
        snprintf(flag, sizeof(flag), "--%s %s", o->name, type_word(o));
        describe(o, extra, sizeof(extra));
        fprintf(f, "  %-26s default: %s%s%s\n", flag, o->def[0] ? o->def : "none",
                extra[0] ? "; " : "", extra);
        fprintf(f, "      %s\n", o->help);
    }
    fprintf(f, "\nExit status: 0 clean stop, 1 runtime failure, 2 configuration error.\n");
}

void cd_config_write_sample(FILE *f)
{
    fprintf(f, "# conduitd.conf - annotated sample configuration for conduitd.\n"
               "#\n"
               "# Generated from the option table in src/config/cd_config.c\n"
               "# (regenerate with: conduitd --sample-config > conf/conduitd.conf; a unit\n"
               "# test fails if this file and the table disagree).\n"
               "#\n"
               "# Syntax: 'key = value' per line, '#' starts a comment. Every key is also\n"
               "# a command-line flag (--key value), and flags override this file.\n"
               "# Use it with: conduitd --conf /etc/conduitd/conduitd.conf\n"
               "# Lines below show the built-in defaults, commented out.\n");
    for (size_t i = 0; i < cd_config_n_options; i++) {
        const cd_option *o = &cd_config_options[i];
        char extra[128];
        describe(o, extra, sizeof(extra));
        fprintf(f, "\n# %s\n", o->help);
        if (extra[0])
            fprintf(f, "# (%s)\n", extra);
        if (o->def[0] != '\0')
            fprintf(f, "#%s = %s\n", o->name, o->def);
        else
            fprintf(f, "#%s =\n", o->name);
    }
}

void cd_config_print_values(FILE *f, const cd_config *cfg)
{
    fprintf(f, "# effective configuration%s%s\n", cfg->conf_file ? " (file " : "",
            cfg->conf_file ? cfg->conf_file : "");
    if (cfg->conf_file)
        fprintf(f, "# plus command-line flags)\n");
    for (size_t i = 0; i < cd_config_n_options; i++) {
        const cd_option *o = &cd_config_options[i];
        if (o->type == CD_OPT_LIST) {
            if (cfg->n_connect == 0)
                fprintf(f, "%s =\n", o->name);
            for (size_t k = 0; k < cfg->n_connect; k++)
                fprintf(f, "%s = %s\n", o->name, cfg->connect[k]);
            continue;
        }
        char v[1024];
        cd_config_format_value(cfg, o, v, sizeof(v));
        if (o->flags & CD_OPT_SECRET) {
            char m[1024];
            cd_config_mask_secret(v, m, sizeof(m));
            fprintf(f, "%s = %s\n", o->name, m);
        } else {
            fprintf(f, "%s = %s\n", o->name, v);
        }
    }
}

const char *cd_config_type_word(const cd_option *o)
{
    return type_word(o);
}

void cd_config_describe(const cd_option *o, char *buf, size_t len)
{
    describe(o, buf, len);
}
