/*
 * btc_net.h - parameters of the four BSV networks (bsv-p2p.md §1).
 */
#ifndef BTC_NET_H
#define BTC_NET_H

#include <stdint.h>

#include "cd_err.h" /* CD_WARN_UNUSED */

typedef enum btc_net_id {
    BTC_NET_MAIN = 0,
    BTC_NET_TEST = 1,
    BTC_NET_REGTEST = 2,
    BTC_NET_STN = 3,
} btc_net_id;

typedef struct btc_net {
    btc_net_id id;
    const char *name; /* "main", "test", "regtest", "stn" */
    uint8_t magic[4]; /* wire order */
    uint16_t default_port;
    uint8_t genesis_header[80];
    uint8_t genesis_hash[32];     /* internal byte order */
    uint8_t pow_limit[32];        /* 256-bit little-endian number */
    uint32_t pow_limit_bits;      /* compact form of pow_limit */
    int pow_no_retargeting;       /* regtest: nBits never changes */
    int pow_allow_min_difficulty; /* testnet/regtest 20-minute rule */
    int32_t uahf_height;
    int32_t daa_height;     /* 144-block cash DAA from this height */
    int32_t genesis_height; /* Genesis upgrade activation */
    int32_t chronicle_height;
} btc_net;

/* Returns: the parameters of a network: static, never freed, valid for the
 * program's life; never NULL for a valid id. */
const btc_net *btc_net_get(btc_net_id id);

/* Looks a network up by name ("main"/"mainnet", "test"/"testnet",
 * "regtest", "stn"). Returns: the static parameters, or NULL if unknown. */
const btc_net *btc_net_by_name(const char *name) CD_WARN_UNUSED;

/* Returns: the static parameters of the network whose wire magic equals
 * `magic`, or NULL. */
const btc_net *btc_net_by_magic(const uint8_t magic[4]) CD_WARN_UNUSED;

#endif /* BTC_NET_H */
