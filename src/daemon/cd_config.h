/*
 * cd_config.h - the daemon's configuration object.
 *
 * Owned by the config module (cd_config.c): one declarative table of options
 * drives the file parser, the command line, --help and conf/conduitd.conf.
 * Other modules only read a const cd_config *. Strings are owned by the
 * config object and freed by cd_config_free().
 */
#ifndef CD_CONFIG_H
#define CD_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "bitcoin/btc_net.h"
#include "common/cd_log.h"

#define CD_CONFIG_MAX_CONNECT 16

/* Exit codes of conduitd and its workers (a worker exiting with
 * CD_EXIT_CONFIG is never respawned; systemd's RestartPreventExitStatus=2). */
#define CD_EXIT_OK 0
#define CD_EXIT_FAILURE 1
#define CD_EXIT_CONFIG 2

typedef struct cd_config {
    const btc_net *net;             /* --regtest/--testnet/--stn, default main */
    char *connect[CD_CONFIG_MAX_CONNECT]; /* "host:port" peers (--connect) */
    size_t n_connect;               /* 0: 127.0.0.1:<default port> */
    char *datadir;                  /* LMDB stores, ring name, status file */
    char *pg_conninfo;              /* libpq conninfo; "" = PG* env defaults */
    uint64_t ring_size;             /* bytes of the shared-memory block ring */
    uint64_t unit_size;             /* target work-unit size in bytes */
    uint32_t parser_workers;        /* 0 = number of cores */
    uint32_t blocks_per_peer;       /* download window per peer */
    uint32_t block_timeout_s;       /* re-request a block after this */
    int relay;                      /* ask peers for mempool tx invs */
    int index_data_pushes;          /* DATA-flag pushdata (after OP_RETURN) */
    cd_log_level log_level;
    char *log_file;                 /* NULL: stderr (journald) */
    char *user_agent;
    uint32_t status_interval_s;     /* progress line period */
} cd_config;

#endif /* CD_CONFIG_H */
