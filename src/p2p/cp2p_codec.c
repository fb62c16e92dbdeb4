/*
 * cp2p_codec.c - serializers/deserializers of the BSV p2p messages.
 *
 * Kept apart from the connection code so every encoding can be unit-tested
 * with the byte vectors of bsv-p2p.md §10 and fuzzed without sockets. All
 * integers are little-endian except the net_addr port (big-endian).
 */
#include "cp2p_codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "btc_varint.h"
#include "cd_escape.h"
#include "cd_hash.h"
#include "cd_util.h"

/* ---- cp2p_buf -------------------------------------------------------------- */

void cp2p_buf_put(cp2p_buf *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 128;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *np = realloc(b->p, cap);
        if (!np) {
            fprintf(stderr, "conduit-p2p: out of memory allocating %zu bytes\n", cap);
            abort();
        }
        b->p = np;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
}

void cp2p_buf_u8(cp2p_buf *b, uint8_t v)
{
    cp2p_buf_put(b, &v, 1);
}

void cp2p_buf_u16be(cp2p_buf *b, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    cp2p_buf_put(b, x, 2);
}

void cp2p_buf_u32(cp2p_buf *b, uint32_t v)
{
    uint8_t x[4];
    cd_put_le32(x, v);
    cp2p_buf_put(b, x, 4);
}

void cp2p_buf_u64(cp2p_buf *b, uint64_t v)
{
    uint8_t x[8];
    cd_put_le64(x, v);
    cp2p_buf_put(b, x, 8);
}

void cp2p_buf_varint(cp2p_buf *b, uint64_t v)
{
    uint8_t x[BTC_VARINT_MAX_LEN];
    cp2p_buf_put(b, x, btc_varint_write(x, v));
}

void cp2p_buf_varstr(cp2p_buf *b, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    cp2p_buf_varint(b, n);
    cp2p_buf_put(b, s, n);
}

void cp2p_buf_free(cp2p_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* ---- cp2p_rd --------------------------------------------------------------- */

void cp2p_rd_init(cp2p_rd *r, const uint8_t *p, size_t len)
{
    r->p = p;
    r->len = len;
    r->pos = 0;
    r->err = 0;
}

size_t cp2p_rd_left(const cp2p_rd *r)
{
    return r->err ? 0 : r->len - r->pos;
}

const uint8_t *cp2p_rd_bytes(cp2p_rd *r, size_t n)
{
    if (r->err || r->len - r->pos < n) {
        r->err = 1;
        return NULL;
    }
    const uint8_t *q = r->p + r->pos;
    r->pos += n;
    return q;
}

uint8_t cp2p_rd_u8(cp2p_rd *r)
{
    const uint8_t *q = cp2p_rd_bytes(r, 1);
    return q ? q[0] : 0;
}

uint16_t cp2p_rd_u16be(cp2p_rd *r)
{
    const uint8_t *q = cp2p_rd_bytes(r, 2);
    return q ? (uint16_t)((q[0] << 8) | q[1]) : 0;
}

uint32_t cp2p_rd_u32(cp2p_rd *r)
{
    const uint8_t *q = cp2p_rd_bytes(r, 4);
    return q ? cd_le32(q) : 0;
}

uint64_t cp2p_rd_u64(cp2p_rd *r)
{
    const uint8_t *q = cp2p_rd_bytes(r, 8);
    return q ? cd_le64(q) : 0;
}

uint64_t cp2p_rd_varint(cp2p_rd *r)
{
    uint64_t v = 0;
    if (r->err)
        return 0;
    int n = btc_varint_read(r->p + r->pos, r->len - r->pos, &v);
    if (n <= 0 || v > BTC_VARINT_MAX_NODE) {
        r->err = 1;
        return 0;
    }
    r->pos += (size_t)n;
    return v;
}

/* ---- message header ------------------------------------------------------- */

int cp2p_command_valid(const uint8_t cmd[CP2P_COMMAND_LEN])
{
    size_t i = 0;
    for (; i < CP2P_COMMAND_LEN && cmd[i]; i++)
        if (cmd[i] < 0x20 || cmd[i] > 0x7E)
            return 0;
    if (i == 0)
        return 0;
    for (; i < CP2P_COMMAND_LEN; i++)
        if (cmd[i])
            return 0;
    return 1;
}

int cp2p_msghdr_decode(const uint8_t *buf, size_t avail, cp2p_msghdr *h)
{
    if (avail < CP2P_HEADER_LEN)
        return 0;
    if (!cp2p_command_valid(buf + 4))
        return -(int)CP2P_R_BAD_COMMAND;
    memcpy(h->magic, buf, 4);
    memcpy(h->cmd, buf + 4, CP2P_COMMAND_LEN);
    h->cmd[CP2P_COMMAND_LEN] = 0;
    h->len = cd_le32(buf + 16);
    memcpy(h->checksum, buf + 20, 4);
    h->ext = 0;
    h->hdr_len = CP2P_HEADER_LEN;
    if (strcmp(h->cmd, "extmsg") != 0)
        return CP2P_HEADER_LEN;
    if (avail < CP2P_EXT_HEADER_LEN)
        return 0;
    if (cd_le32(buf + 16) != 0xFFFFFFFFu || !cp2p_command_valid(buf + 24))
        return -(int)CP2P_R_MALFORMED;
    memcpy(h->cmd, buf + 24, CP2P_COMMAND_LEN);
    h->cmd[CP2P_COMMAND_LEN] = 0;
    if (strcmp(h->cmd, "extmsg") == 0)
        return -(int)CP2P_R_MALFORMED;
    h->len = cd_le64(buf + 36);
    h->ext = 1;
    h->hdr_len = CP2P_EXT_HEADER_LEN;
    return CP2P_EXT_HEADER_LEN;
}

static void put_cmd(uint8_t *out, const char *cmd)
{
    memset(out, 0, CP2P_COMMAND_LEN);
    size_t n = strlen(cmd);
    memcpy(out, cmd, n > CP2P_COMMAND_LEN ? CP2P_COMMAND_LEN : n);
}

void cp2p_msghdr_encode(uint8_t out[CP2P_HEADER_LEN], const uint8_t magic[4], const char *cmd,
                        const uint8_t *payload, size_t len)
{
    uint8_t h[CD_HASH_LEN];
    memcpy(out, magic, 4);
    put_cmd(out + 4, cmd);
    cd_put_le32(out + 16, (uint32_t)len);
    cd_sha256d(h, payload, len);
    memcpy(out + 20, h, 4);
}

void cp2p_msghdr_encode_ext(uint8_t out[CP2P_EXT_HEADER_LEN], const uint8_t magic[4],
                            const char *cmd, uint64_t len)
{
    memcpy(out, magic, 4);
    put_cmd(out + 4, "extmsg");
    cd_put_le32(out + 16, 0xFFFFFFFFu);
    cd_put_le32(out + 20, 0);
    put_cmd(out + 24, cmd);
    cd_put_le64(out + 36, len);
}

uint64_t cp2p_recv_limit(const cp2p_options *opt, const char *cmd)
{
    if (strcmp(cmd, "block") == 0)
        return opt->max_block_payload;
    if (strcmp(cmd, "tx") == 0)
        return opt->max_tx_payload;
    if (strcmp(cmd, "protoconf") == 0)
        return 1024 * 1024;
    return opt->max_recv_payload;
}

/* ---- encoders -------------------------------------------------------------- */

static void enc_netaddr(cp2p_buf *b, uint64_t services, const uint8_t ip[16], uint16_t port)
{
    static const uint8_t zero[16];
    cp2p_buf_u64(b, services);
    cp2p_buf_put(b, ip ? ip : zero, 16);
    cp2p_buf_u16be(b, port);
}

void cp2p_enc_version(cp2p_buf *b, const cp2p_version *v, const uint8_t recv_ip[16],
                      uint16_t recv_port)
{
    cp2p_buf_u32(b, (uint32_t)v->version);
    cp2p_buf_u64(b, v->services);
    cp2p_buf_u64(b, (uint64_t)v->timestamp);
    enc_netaddr(b, 0, recv_ip, recv_port);
    enc_netaddr(b, 0, NULL, 0);
    cp2p_buf_u64(b, v->nonce);
    cp2p_buf_varstr(b, v->user_agent);
    cp2p_buf_u32(b, (uint32_t)v->start_height);
    cp2p_buf_u8(b, v->relay ? 1 : 0);
    /* association id omitted (bsv-p2p.md §3.1) */
}

void cp2p_enc_protoconf(cp2p_buf *b, uint32_t max_recv, const char *policies)
{
    cp2p_buf_varint(b, policies ? 2 : 1);
    cp2p_buf_u32(b, max_recv);
    if (policies)
        cp2p_buf_varstr(b, policies);
}

void cp2p_enc_u64(cp2p_buf *b, uint64_t v)
{
    cp2p_buf_u64(b, v);
}

void cp2p_enc_getheaders(cp2p_buf *b, const uint8_t (*locator)[32], size_t n, const uint8_t *stop)
{
    static const uint8_t zero[32];
    cp2p_buf_u32(b, CP2P_PROTOCOL_VERSION);
    cp2p_buf_varint(b, n);
    for (size_t i = 0; i < n; i++)
        cp2p_buf_put(b, locator[i], 32);
    cp2p_buf_put(b, stop ? stop : zero, 32); /* 32 real zero bytes, not "00"*32 */
}

void cp2p_enc_inv(cp2p_buf *b, const cp2p_inv *items, size_t n)
{
    cp2p_buf_varint(b, n);
    for (size_t i = 0; i < n; i++) {
        cp2p_buf_u32(b, items[i].type);
        cp2p_buf_put(b, items[i].hash, 32);
    }
}

void cp2p_enc_headers(cp2p_buf *b, const uint8_t *hdrs, size_t n)
{
    cp2p_buf_varint(b, n);
    for (size_t i = 0; i < n; i++) {
        cp2p_buf_put(b, hdrs + 80 * i, 80);
        cp2p_buf_u8(b, 0);
    }
}

void cp2p_enc_reject(cp2p_buf *b, const cp2p_reject *r)
{
    cp2p_buf_varstr(b, r->message);
    cp2p_buf_u8(b, r->code);
    cp2p_buf_varstr(b, r->reason);
    if (r->has_hash)
        cp2p_buf_put(b, r->hash, 32);
}

void cp2p_enc_addr(cp2p_buf *b, const cp2p_addr *a, size_t n)
{
    cp2p_buf_varint(b, n);
    for (size_t i = 0; i < n; i++) {
        cp2p_buf_u32(b, a[i].time);
        enc_netaddr(b, a[i].services, a[i].ip, a[i].port);
    }
}

void cp2p_enc_sendcmpct(cp2p_buf *b, int announce, uint64_t version)
{
    cp2p_buf_u8(b, announce ? 1 : 0);
    cp2p_buf_u64(b, version);
}

void cp2p_enc_mempool(cp2p_buf *b, int64_t age_s)
{
    if (age_s < 0)
        return;
    cp2p_buf_u8(b, 1);
    cp2p_buf_u64(b, (uint64_t)age_s);
}

void cp2p_enc_authch(cp2p_buf *b, const uint8_t challenge[32])
{
    cp2p_buf_u32(b, 1);
    cp2p_buf_u32(b, 32);
    cp2p_buf_put(b, challenge, 32);
}

size_t cp2p_inv_max_entries(uint64_t max_payload)
{
    /* the node's rule: (L - 8) / 36, leaving room for the CompactSize */
    if (max_payload < 8 + CP2P_INV_ENTRY_LEN)
        return 1;
    return (size_t)((max_payload - 8) / CP2P_INV_ENTRY_LEN);
}

/* ---- decoders -------------------------------------------------------------- */

/* Reads a var_str of at most maxlen bytes and stores its first `keep` bytes
 * escaped (cd_escape: peers choose this text) in out. */
static void rd_varstr(cp2p_rd *r, char *out, size_t outsz, size_t maxlen, size_t keep)
{
    uint64_t n = cp2p_rd_varint(r);
    out[0] = 0;
    if (n > maxlen) {
        r->err = 1;
        return;
    }
    const uint8_t *s = cp2p_rd_bytes(r, (size_t)n);
    if (!s)
        return;
    cd_escape(out, outsz, s, (size_t)n < keep ? (size_t)n : keep);
}

int cp2p_dec_version(const uint8_t *p, size_t len, cp2p_version *v)
{
    cp2p_rd r;
    cp2p_rd_init(&r, p, len);
    memset(v, 0, sizeof(*v));
    v->version = (int32_t)cp2p_rd_u32(&r);
    v->services = cp2p_rd_u64(&r);
    v->timestamp = (int64_t)cp2p_rd_u64(&r);
    cp2p_rd_bytes(&r, 26); /* addr_recv */
    if (r.err)
        return CP2P_EMALFORMED;
    v->relay = 1;
    /* Fields below are optional in old versions; the node always sends them. */
    if (cp2p_rd_left(&r) == 0)
        return CP2P_OK;
    cp2p_rd_bytes(&r, 26); /* addr_from */
    v->nonce = cp2p_rd_u64(&r);
    rd_varstr(&r, v->user_agent, sizeof(v->user_agent), 256, 256);
    v->start_height = (int32_t)cp2p_rd_u32(&r);
    if (r.err)
        return CP2P_EMALFORMED;
    if (cp2p_rd_left(&r) > 0)
        v->relay = cp2p_rd_u8(&r) != 0;
    /* association id and later fields: tolerated, ignored */
    return CP2P_OK;
}

int cp2p_dec_protoconf(const uint8_t *p, size_t len, uint64_t *n_fields, uint32_t *max_recv)
{
    cp2p_rd r;
    cp2p_rd_init(&r, p, len);
    *n_fields = cp2p_rd_varint(&r);
    if (r.err || *n_fields == 0)
        return CP2P_EMALFORMED;
    *max_recv = cp2p_rd_u32(&r);
    return r.err ? CP2P_EMALFORMED : CP2P_OK;
}

int cp2p_dec_u64(const uint8_t *p, size_t len, uint64_t *v)
{
    if (len < 8)
        return CP2P_EMALFORMED;
    *v = cd_le64(p);
    return CP2P_OK;
}

int cp2p_dec_inv(const uint8_t *p, size_t len, cp2p_inv *out, size_t max, size_t *n)
{
    cp2p_rd r;
    cp2p_rd_init(&r, p, len);
    uint64_t cnt = cp2p_rd_varint(&r);
    if (r.err || cnt > cp2p_rd_left(&r) / CP2P_INV_ENTRY_LEN)
        return CP2P_EMALFORMED;
    for (uint64_t i = 0; i < cnt; i++) {
        uint32_t t = cp2p_rd_u32(&r);
        const uint8_t *h = cp2p_rd_bytes(&r, 32);
        if (i < max) {
            out[i].type = t;
            memcpy(out[i].hash, h, 32);
        }
    }
    *n = (size_t)cnt;
    return r.err ? CP2P_EMALFORMED : CP2P_OK;
}

int cp2p_dec_headers(const uint8_t *p, size_t len, uint8_t *out, size_t max, size_t *n)
{
    cp2p_rd r;
    cp2p_rd_init(&r, p, len);
    uint64_t cnt = cp2p_rd_varint(&r);
    if (r.err || cnt > CP2P_MAX_HEADERS_PER_MSG || cnt > cp2p_rd_left(&r) / 81)
        return CP2P_EMALFORMED;
    for (uint64_t i = 0; i < cnt; i++) {
        const uint8_t *h = cp2p_rd_bytes(&r, 80);
        (void)cp2p_rd_varint(&r); /* tx count, always 0 from the node */
        if (r.err)
            return CP2P_EMALFORMED;
        if (i < max)
            memcpy(out + 80 * i, h, 80);
    }
    *n = (size_t)cnt;
    return CP2P_OK;
}

int cp2p_dec_getheaders(const uint8_t *p, size_t len, uint32_t *version, uint8_t (*locator)[32],
                        size_t max, size_t *n, uint8_t stop[32])
{
    cp2p_rd r;
    cp2p_rd_init(&r, p, len);
    *version = cp2p_rd_u32(&r);
    uint64_t cnt = cp2p_rd_varint(&r);
    if (r.err || cnt > cp2p_rd_left(&r) / 32)
        return CP2P_EMALFORMED;
    for (uint64_t i = 0; i < cnt; i++) {
        const uint8_t *h = cp2p_rd_bytes(&r, 32);
        if (i < max)
            memcpy(locator[i], h, 32);
    }
    const uint8_t *s = cp2p_rd_bytes(&r, 32);
    if (r.err)
        return CP2P_EMALFORMED;
    memcpy(stop, s, 32);
    *n = (size_t)cnt;
    return CP2P_OK;
}

int cp2p_dec_reject(const uint8_t *p, size_t len, cp2p_reject *rj)
{
    cp2p_rd r;
    cp2p_rd_init(&r, p, len);
    memset(rj, 0, sizeof(*rj));
    rd_varstr(&r, rj->message, sizeof(rj->message), CP2P_COMMAND_LEN, CP2P_COMMAND_LEN);
    rj->code = cp2p_rd_u8(&r);
    rd_varstr(&r, rj->reason, sizeof(rj->reason), 65535, 111);
    if (r.err)
        return CP2P_EMALFORMED;
    if (cp2p_rd_left(&r) >= 32) {
        memcpy(rj->hash, cp2p_rd_bytes(&r, 32), 32);
        rj->has_hash = 1;
    }
    return CP2P_OK;
}

int cp2p_dec_addr(const uint8_t *p, size_t len, cp2p_addr *out, size_t max, size_t *n)
{
    cp2p_rd r;
    cp2p_rd_init(&r, p, len);
    uint64_t cnt = cp2p_rd_varint(&r);
    if (r.err || cnt > cp2p_rd_left(&r) / 30)
        return CP2P_EMALFORMED;
    for (uint64_t i = 0; i < cnt; i++) {
        uint32_t t = cp2p_rd_u32(&r);
        uint64_t s = cp2p_rd_u64(&r);
        const uint8_t *ip = cp2p_rd_bytes(&r, 16);
        uint16_t port = cp2p_rd_u16be(&r);
        if (r.err)
            return CP2P_EMALFORMED;
        if (i < max) {
            out[i].time = t;
            out[i].services = s;
            memcpy(out[i].ip, ip, 16);
            out[i].port = port;
        }
    }
    *n = (size_t)cnt;
    return CP2P_OK;
}

int cp2p_dec_sendcmpct(const uint8_t *p, size_t len, int *announce, uint64_t *version)
{
    if (len < 9)
        return CP2P_EMALFORMED;
    *announce = p[0] != 0;
    *version = cd_le64(p + 1);
    return CP2P_OK;
}

int cp2p_dec_authch(const uint8_t *p, size_t len, uint32_t *version, uint8_t challenge[32])
{
    cp2p_rd r;
    cp2p_rd_init(&r, p, len);
    *version = cp2p_rd_u32(&r);
    uint32_t n = cp2p_rd_u32(&r);
    const uint8_t *c = cp2p_rd_bytes(&r, 32);
    if (r.err || n != 32)
        return CP2P_EMALFORMED;
    memcpy(challenge, c, 32);
    return CP2P_OK;
}

int cp2p_dec_mempool(const uint8_t *p, size_t len, int64_t *age_s)
{
    if (len == 0) {
        *age_s = -1;
        return CP2P_OK;
    }
    if (len < 9 || p[0] != 1)
        return CP2P_EMALFORMED;
    *age_s = (int64_t)cd_le64(p + 1);
    return CP2P_OK;
}
