/*
 * btc_net.c - network parameter table (values from the Bitcoin SV node's
 * chainparams, see bsv-p2p.md §1).
 */
#include "btc_net.h"
#include "cd_hash.h"
#include "cd_util.h"

#include <string.h>
#include <strings.h>

/* The four genesis headers share version, prev and merkle root. */
#define GENESIS_PREFIX                                                                             \
    "01000000"                                                                                     \
    "0000000000000000000000000000000000000000000000000000000000000000"                             \
    "3ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a"

typedef struct net_src {
    btc_net_id id;
    const char *name;
    uint8_t magic[4];
    uint16_t port;
    const char *genesis_tail;      /* time, bits, nonce (LE hex) */
    const char *pow_limit_display; /* big-endian hex of the 256-bit limit */
    uint32_t pow_limit_bits;
    int no_retarget, min_diff;
    int32_t uahf, daa, genesis, chronicle;
} net_src;

/* clang-format off */
static const net_src srcs[4] = {
    {BTC_NET_MAIN, "main", {0xe3, 0xe1, 0xf3, 0xe8}, 8333,
     "29ab5f49ffff001d1dac2b7c",
     "00000000ffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
     0x1d00ffff, 0, 0, 478558, 504031, 620538, 943816},
    {BTC_NET_TEST, "test", {0xf4, 0xe5, 0xf3, 0xf4}, 18333,
     "dae5494dffff001d1aa4ae18",
     "00000000ffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
     0x1d00ffff, 0, 1, 1155875, 1188697, 1344302, 1713168},
    {BTC_NET_REGTEST, "regtest", {0xda, 0xb5, 0xbf, 0xfa}, 18444,
     "dae5494dffff7f2002000000",
     "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
     0x207fffff, 1, 1, 0, 0, 10000, 15000},
    {BTC_NET_STN, "stn", {0xfb, 0xce, 0xc4, 0xf9}, 9333,
     "dae5494dffff001d1aa4ae18",
     "00000000ffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
     0x1d00ffff, 0, 0, 15, 2200, 100, 250},
};
/* clang-format on */

static btc_net nets[4];
static int nets_ready;

static void init_nets(void)
{
    if (nets_ready)
        return;
    for (int i = 0; i < 4; i++) {
        const net_src *s = &srcs[i];
        btc_net *n = &nets[i];
        char hex[161];
        n->id = s->id;
        n->name = s->name;
        memcpy(n->magic, s->magic, 4);
        n->default_port = s->port;
        memcpy(hex, GENESIS_PREFIX, 136);
        memcpy(hex + 136, s->genesis_tail, 24);
        hex[160] = '\0';
        cd_assert(cd_hex_decode(n->genesis_header, 80, hex) == 0);
        cd_sha256d(n->genesis_hash, n->genesis_header, 80);
        cd_assert(cd_hex_decode_rev(n->pow_limit, 32, s->pow_limit_display) == 0);
        n->pow_limit_bits = s->pow_limit_bits;
        n->pow_no_retargeting = s->no_retarget;
        n->pow_allow_min_difficulty = s->min_diff;
        n->uahf_height = s->uahf;
        n->daa_height = s->daa;
        n->genesis_height = s->genesis;
        n->chronicle_height = s->chronicle;
    }
    nets_ready = 1;
}

const btc_net *btc_net_get(btc_net_id id)
{
    init_nets();
    if ((unsigned)id >= 4)
        return NULL;
    return &nets[id];
}

const btc_net *btc_net_by_name(const char *name)
{
    static const struct {
        const char *alias;
        btc_net_id id;
    } aliases[] = {
        {"main", BTC_NET_MAIN},    {"mainnet", BTC_NET_MAIN},        {"test", BTC_NET_TEST},
        {"testnet", BTC_NET_TEST}, {"testnet3", BTC_NET_TEST},       {"regtest", BTC_NET_REGTEST},
        {"stn", BTC_NET_STN},      {"scaling-testnet", BTC_NET_STN},
    };
    for (size_t i = 0; i < CD_ARRAY_LEN(aliases); i++)
        if (strcasecmp(name, aliases[i].alias) == 0)
            return btc_net_get(aliases[i].id);
    return NULL;
}

const btc_net *btc_net_by_magic(const uint8_t magic[4])
{
    init_nets();
    for (int i = 0; i < 4; i++)
        if (memcmp(nets[i].magic, magic, 4) == 0)
            return &nets[i];
    return NULL;
}
