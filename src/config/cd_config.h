/*
 * cd_config.h - the daemon's configuration object and its option table.
 *
 * Owned by the config room (cd_config.c, cd_config_load.c): one declarative
 * table of options (cd_config_options[]) drives the config file parser, the
 * command line, --help and the annotated sample conf/conduitd.conf. Other modules only read
 * a const cd_config *; the object is created by main.c and lives until exit.
 *
 * Precedence: built-in defaults < config file (--conf FILE, or a default
 * one: cd_config_parse_args) < command line.
 *
 * NOTES
 *  - Every string field is a NUL-terminated heap string owned by the config
 *    object (never NULL after cd_config_finish(), except log_file which is
 *    NULL for "log to stderr"). cd_config_free() releases them.
 *  - On SIGHUP the controller's signal handling (cd_signals.h) calls
 *    cd_config_reload(): a fresh object is built from the same file and
 *    command line, and only options marked reloadable are copied into the
 *    live object (single-threaded: the controller loop is the only reader).
 *  - Forked workers get a copy of the object as it was at fork time.
 */
#ifndef CD_CONFIG_H
#define CD_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "btc_net.h"
#include "cd_log.h"
#include "cd_err.h" /* CD_WARN_UNUSED */

#define CD_CONFIG_MAX_CONNECT 16

/* The most parser workers (parser_workers): the one bound that the option
 * table, the default (one per core) and the pipeline share. A worker owns a
 * bit of a unit's 64-bit ack mask and a 64-byte slot of the ring header
 * (48 slots), beside the block writer and the merkle worker; 38 leaves room
 * to spare. A larger explicit value is a configuration error (exit 2). */
#define CD_CONFIG_MAX_PARSER_WORKERS 38

/* The largest partition_merge (fan-in of a merge of partitions, sql/019):
 * at fan-in f each level keeps up to f-1 partitions, and a lookup by hash
 * probes every one; past 64 a merge bounds nothing that a lower fan-in
 * would not bound better. */
#define CD_CONFIG_MAX_PARTITION_MERGE 64

/* Exit codes of conduitd and its workers (a worker exiting with
 * CD_EXIT_CONFIG is never respawned; systemd's RestartPreventExitStatus=2). */
#define CD_EXIT_OK      0
#define CD_EXIT_FAILURE 1
#define CD_EXIT_CONFIG  2

/* catchup_indexes (cd_catchup.h) */
#define CD_CATCHUP_AUTO 0
#define CD_CATCHUP_LIVE 1

/* mempool_request (cd_mempool.h): when conduitd sends `mempool` to a node */
#define CD_MEMPOOL_REQ_AUTO   0 /* only to an address known to allow it (probed) */
#define CD_MEMPOOL_REQ_ALWAYS 1 /* to every address, refusals not remembered */
#define CD_MEMPOOL_REQ_NEVER  2 /* never: relayed txs only */

struct cd_config_src; /* private: where the object came from (for reload) */

typedef struct cd_config {
    const btc_net *net;                   /* network = main|test|regtest|stn
                                             (--regtest/--testnet/--stn) */
    char *connect[CD_CONFIG_MAX_CONNECT]; /* "host:port" peers (--connect);
                                       a missing port gets the network's */
    size_t n_connect;                     /* 0: 127.0.0.1:<default port> */
    char *datadir;                        /* absolute path after cd_config_finish();
                                             default $HOME/.conduitd/<network> */
    char *pg_conninfo;                    /* libpq conninfo; "" = PG* env defaults */
    int index;                            /* 1: index into PostgreSQL (checked at
                                             start); 0: headers/blocks only */
    uint64_t ring_size;                   /* bytes of the shared-memory block ring */
    uint64_t unit_size;                   /* target work-unit size in bytes */
    uint32_t parser_workers;              /* 0 = one per core (at most
                                             CD_CONFIG_MAX_PARSER_WORKERS);
                                             see cd_config_parser_workers() */
    int catchup_indexes;                  /* CD_CATCHUP_AUTO | CD_CATCHUP_LIVE */
    uint32_t catchup_threshold;           /* blocks behind that start catch-up mode */
    uint32_t catchup_ratio_pct;           /* ...and backlog txs >= this % of indexed txs */
    uint32_t partition_txs;               /* roll the tip partition at this many txs
                                             (sql/017; 0: never) */
    uint32_t partition_merge;             /* merge this many closed partitions of
                                             one level into one (sql/019; 0: never) */
    int key_rows;                         /* the key-rows process (cd_keyrows.h) */
    uint32_t blocks_per_peer;             /* download window per peer (reloadable) */
    uint32_t block_timeout_s;             /* re-request a block after this (reloadable) */
    uint32_t block_min_rate;              /* bytes/s floor of a block download (0: off) */
    uint32_t block_rate_grace_s;          /* reading time before block_min_rate applies */
    int block_checksum;                   /* verify p2p checksums of block messages */
    int serve_block_check;                /* re-hash a block before serving it (F7) */
    int relay;                            /* ask peers for mempool tx invs */
    int index_data_pushes;                /* DATA-flag pushdata (after OP_RETURN) */
    uint32_t max_data_push;               /* longest DATA push hashed (bytes) */
    uint32_t mempool_max_txs;             /* mempool rows cap (oldest evicted) */
    uint64_t mempool_max_bytes;           /* mempool bytes cap (oldest evicted) */
    uint64_t mempool_max_tx_size;         /* larger relayed txs are not taken */
    uint32_t mempool_expiry_h;            /* rows older than this are expired */
    int mempool_request;                  /* CD_MEMPOOL_REQ_* */
    uint32_t mempool_sync_interval_s;     /* between snapshots of the node's mempool */
    uint32_t mempool_sync_grace_s;        /* rows younger than this are never
                                             evicted by a snapshot */
    uint32_t mempool_evicted_keep_h;      /* mempool_evicted rows kept this long */
    uint32_t events_keep_h;               /* events rows (the event log) kept this long */
    cd_log_level log_level;               /* reloadable */
    char *log_file;                       /* NULL: stderr (journald); reloadable */
    char *user_agent;
    uint32_t status_interval_s; /* progress line period (reloadable) */
    char *http_listen;          /* HTTP API "address:port" (cd_http.h); "" = off */
    uint32_t http_client_limit; /* requests in progress per client address; 0 = off */
    char *api_keys;             /* "k1,k2": bearer keys of the write routes
                                   (cd_http_arc.c); NULL = writes refused */
    char *http_cors_origins;    /* origins browsers may read the API from:
                                   space/comma separated, "*" = any, "" = none */
    uint32_t events_max_conns;  /* event streams per HTTP server process; 0 = off */
    uint32_t events_max_keys;   /* keys + outpoints per event stream */
    uint64_t events_max_output; /* bytes queued to one event stream */
    uint64_t events_max_message; /* largest websocket message from a client */
    uint32_t events_stall_s;    /* output full this long: the client is cut off */
    uint32_t events_ping_s;     /* keep-alive period of idle event streams */
    uint32_t events_sub_idle_s; /* a subscription without clients expires after */
    char *metrics_listen;       /* Prometheus endpoint "address:port" (a bare port
                                   is completed to 127.0.0.1:port by
                                   cd_config_finish); "" = off */
    int metrics_allow_remote;   /* metrics_listen may be non-loopback */
    int webhooks;                   /* the webhook delivery process (cd_http_hooks.h) */
    uint32_t webhook_timeout_s;     /* connect + answer of one delivery */
    uint32_t webhook_retry_max_s;   /* back-off cap between retries */
    uint32_t webhook_failing_after; /* failed attempts in a row: "failing" */
    char *conduitdb_reference_url;  /* ConduitDB's reference server (http:// base URL):
                                       tip-filter matches POSTed to it; NULL = off */
    char *conf_file;            /* --conf path or NULL */
    struct cd_config_src *src;  /* private */
} cd_config;

/* ---- the option table ---- */

typedef enum cd_opt_type {
    CD_OPT_BOOL,   /* int: on/off yes/no true/false 1/0 */
    CD_OPT_INT,    /* uint32_t, decimal, bounded by min/max */
    CD_OPT_SIZE,   /* uint64_t bytes, optional K/M/G/T suffix (x1024) */
    CD_OPT_STRING, /* char * */
    CD_OPT_ENUM,   /* value one of enum_names; stored by a per-option setter */
    CD_OPT_LIST,   /* char *[CD_CONFIG_MAX_CONNECT] + size_t count */
} cd_opt_type;

#define CD_OPT_RELOADABLE 0x1 /* applied on SIGHUP */
#define CD_OPT_EMPTY_NULL 0x2 /* string: "" is stored as NULL */
#define CD_OPT_SECRET     0x4 /* string: may hold a password, shown masked */
#define CD_OPT_KEYS       0x8 /* string: secret as a whole (API keys): formatted as "(hidden: N keys)" */

typedef struct cd_option {
    const char *name; /* file key and --name flag */
    cd_opt_type type;
    const char *def;               /* default, in config-file syntax */
    uint64_t min, max;             /* INT/SIZE bounds (inclusive) */
    unsigned flags;                /* CD_OPT_* */
    size_t offset;                 /* offsetof(cd_config, field) */
    const char *const *enum_names; /* ENUM: NULL-terminated list */
    const char *help;              /* one line */
} cd_option;

extern const cd_option cd_config_options[];
extern const size_t cd_config_n_options;

/* Finds an option by name. Returns: its entry of the static table, or NULL
 * if unknown. */
const cd_option *cd_config_find(const char *name);

/* Resets *cfg to the built-in defaults (all strings allocated).
 * Call cd_config_free() afterwards. */
void cd_config_init(cd_config *cfg);

/* Frees every string and the private part; *cfg is zeroed. NULL-safe. */
void cd_config_free(cd_config *cfg);

/* Sets one option from its textual value (file syntax). A LIST option
 * appends. Returns 0, or -1 with a short problem description in err
 * (e.g. "value out of range 1..1024"). */
int cd_config_set(cd_config *cfg, const char *key, const char *value, char *err,
                  size_t errlen) CD_WARN_UNUSED;

/* Reads a config file: `key = value` lines, `#` comments, blank lines.
 * Returns 0, or -1 with err = "<file>:<line>: <problem>: '<text>'"
 * (or "<file>: <strerror>" when it cannot be read). */
int cd_config_load_file(cd_config *cfg, const char *path, char *err, size_t errlen) CD_WARN_UNUSED;

/* Result of cd_config_parse_args(). */
typedef enum cd_config_action {
    CD_CONFIG_RUN = 0, /* start the daemon */
    CD_CONFIG_HELP,    /* --help, --sample-config or --print-config
                          printed to stdout: exit 0 (cd_config_free) */
    CD_CONFIG_VERSION, /* --version printed to stdout: exit 0 */
    CD_CONFIG_ERROR,   /* err filled: print it, exit CD_EXIT_CONFIG */
} cd_config_action;

/* Builds the whole configuration: defaults, then --conf FILE, then every
 * command-line flag (--key value, --key=value, --no-<bool>, --regtest,
 * --testnet, --stn, --mainnet, --connect (repeatable), --datadir, --conf,
 * --no-conf, --help, --version, --sample-config, --print-config; every flag
 * also in bitcoind's single-dash form: -regtest, -datadir=DIR), then
 * cd_config_finish(). Without --conf (and without --no-conf) the first
 * existing default file is read: <datadir>/conduitd.conf for a
 * command-line --datadir, else $HOME/.conduitd/<network>/conduitd.conf or
 * $HOME/.conduitd/conduitd.conf; then CD_SYSCONFDIR/conduitd/conduitd.conf
 * (cfg->conf_file names the file read). In the file, regtest=1, testnet=1,
 * stn=1, mainnet=1 choose the network as bitcoind's do. `prog` names the
 * program in
 * --help ("conduitd"). The command line is remembered for reload (argv must
 * then stay valid while cfg lives: main's argv). On CD_CONFIG_ERROR, err
 * holds a one-line message without the program name.
 * Out: *cfg, initialised by the call whatever it returns: cd_config_free()
 *      it in every case. */
cd_config_action cd_config_parse_args(cd_config *cfg, const char *prog, int argc, char **argv,
                                      char *err, size_t errlen) CD_WARN_UNUSED;

/* Fills derived values: default datadir ($HOME/.conduitd/<network>, made
 * absolute), default ports on --connect entries. Does not touch the disk.
 * Returns 0 or -1 with err. Called by cd_config_parse_args(). */
int cd_config_finish(cd_config *cfg, char *err, size_t errlen) CD_WARN_UNUSED;

/* The number of parser workers to run: parser_workers when set, else one
 * per core, at most CD_CONFIG_MAX_PARSER_WORKERS (a host with more cores
 * runs the most; the option table refuses an explicit larger value).
 * In:  cores  online CPU cores (sysconf(_SC_NPROCESSORS_ONLN)); < 1: 1
 * Returns: 1..CD_CONFIG_MAX_PARSER_WORKERS, or cfg->parser_workers as set
 * (which the option table bounds the same way). */
unsigned cd_config_parser_workers(const cd_config *cfg, long cores);

/* The work-unit size the pipeline cuts blocks at and start-up recovery
 * re-cuts stored blocks at (one function, so both cut alike): unit_size
 * (32 MiB when 0), at most a quarter of ring_size (so several units are in
 * flight in the ring; cd_config_finish refuses more than half), at least
 * 4 KiB. Returns: bytes. */
uint64_t cd_config_unit_size(const cd_config *cfg);

/* Creates the data directory if missing (mode 0700, parents too) and checks
 * that it is a readable, writable directory. Returns 0, or -1 with err =
 * "data directory <path>: <strerror>". */
int cd_config_check_datadir(const cd_config *cfg, char *err, size_t errlen) CD_WARN_UNUSED;

/* Re-reads the config file and the original command line, then copies the
 * reloadable options into *live and applies the log settings (level, file:
 * cd_log_open() if the path changed, else cd_log_reopen()). Changed
 * non-reloadable options are logged as needing a restart. If the new
 * configuration is invalid, *live is left untouched.
 * Returns 0, or -1 (error already logged). Controller loop only. */
int cd_config_reload(cd_config *live) CD_WARN_UNUSED;

/* Writes the --help text (generated from the table). */
void cd_config_print_help(FILE *f, const char *prog);

/* Writes the annotated sample config file (what conf/conduitd.conf holds). */
void cd_config_write_sample(FILE *f);

/* Writes the effective configuration as a config file (--print-config). */
void cd_config_print_values(FILE *f, const cd_config *cfg);

/* Copies a libpq connection string into out (NUL-terminated, truncated to
 * len) with every password replaced by "***": the value of a `password`
 * keyword (key=value form, quoted or not), the password of a URI's user
 * info (postgresql://user:pw@host/db) and a `password` URI parameter
 * (...?password=pw). Everything else is copied as is. What --print-config,
 * the reload log and the PostgreSQL connection messages show of
 * pg_conninfo. */
void cd_config_mask_secret(const char *conninfo, char *out, size_t len);

/* Overwrites, in place, the password of a --pg-conninfo / --pg_conninfo
 * value among argv[1..argc-1] (the next argument or after '='), so that
 * /proc/PID/cmdline and ps show "***" instead: the kernel reads the command
 * line from the process's own argv memory, and forked workers inherit the
 * scrubbed copy. Call after cd_config_parse_args (which copied the values).
 * Bytes freed by the shorter text become NULs (empty arguments to ps).
 * Returns: the number of arguments changed. */
int cd_config_scrub_argv(int argc, char **argv);

/* The placeholder of an option's value in --help and the man pages
 * ("on|off", "N", "SIZE", ...). Returns a static string. */
const char *cd_config_type_word(const cd_option *o);

/* An option's range and flags in words ("range 1..1024; reloaded on
 * SIGHUP"), "" if nothing to say, into buf (the man pages use it). */
void cd_config_describe(const cd_option *o, char *buf, size_t len);

/* Formats the current value of an option in file syntax into buf (secrets
 * in clear: for comparing values; cd_config_mask_secret before showing). */
void cd_config_format_value(const cd_config *cfg, const cd_option *opt, char *buf, size_t len);

#endif /* CD_CONFIG_H */
