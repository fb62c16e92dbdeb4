/*
 * cp2p_codec.h - serializers and deserializers of the BSV p2p messages
 * (bsv-p2p.md §2 and §11). Pure functions over byte buffers: no I/O, no
 * global state, no allocation except in cp2p_buf.
 *
 * Not covered: the BSV miner-ID messages hdrsen/gethdrsen/sendhdrsen payloads
 * beyond getheaders' layout (gethdrsen = cp2p_enc_getheaders), and
 * compact blocks (cmpctblock/getblocktxn/blocktxn), which the library never
 * requests.
 *
 * Decoders never read past `len`, accept trailing bytes (the node appends
 * fields over time), reject non-canonical CompactSizes and CompactSizes
 * above 0xFFFFFFFF (as the node does), and return CP2P_EMALFORMED on any
 * short or inconsistent payload.
 */
#ifndef CP2P_CODEC_H
#define CP2P_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "conduit_p2p.h"

/* ---- growable output buffer ---------------------------------------------- */

typedef struct cp2p_buf {
    uint8_t *p;
    size_t len, cap;
} cp2p_buf;

/* Appends; aborts on out-of-memory (control-sized data only). */
void cp2p_buf_put(cp2p_buf *b, const void *data, size_t n);
void cp2p_buf_u8(cp2p_buf *b, uint8_t v);
void cp2p_buf_u16be(cp2p_buf *b, uint16_t v);
void cp2p_buf_u32(cp2p_buf *b, uint32_t v);
void cp2p_buf_u64(cp2p_buf *b, uint64_t v);
void cp2p_buf_varint(cp2p_buf *b, uint64_t v);
void cp2p_buf_varstr(cp2p_buf *b, const char *s);
void cp2p_buf_free(cp2p_buf *b);

/* ---- input reader --------------------------------------------------------- */

typedef struct cp2p_rd {
    const uint8_t *p;
    size_t len, pos;
    int err; /* sticky: set on the first short read */
} cp2p_rd;

void cp2p_rd_init(cp2p_rd *r, const uint8_t *p, size_t len);
uint8_t cp2p_rd_u8(cp2p_rd *r);
uint16_t cp2p_rd_u16be(cp2p_rd *r);
uint32_t cp2p_rd_u32(cp2p_rd *r);
uint64_t cp2p_rd_u64(cp2p_rd *r);
/* Canonical CompactSize <= 0xFFFFFFFF, else err. */
uint64_t cp2p_rd_varint(cp2p_rd *r);
/* Returns a pointer to n bytes inside the input, or NULL (err set). */
const uint8_t *cp2p_rd_bytes(cp2p_rd *r, size_t n);
size_t cp2p_rd_left(const cp2p_rd *r);

/* ---- message header ------------------------------------------------------- */

typedef struct cp2p_msghdr {
    uint8_t magic[4];
    char cmd[CP2P_COMMAND_LEN + 1]; /* NUL-terminated (inner command for extmsg) */
    uint64_t len;                   /* payload length */
    uint8_t checksum[4];
    int ext;        /* 1 for a 44-byte extmsg header */
    size_t hdr_len; /* 24 or 44 */
} cp2p_msghdr;

/* 1 if the 12-byte command field is printable ASCII up to the first NUL
 * followed only by NULs and non-empty (protocol.cpp rule). */
int cp2p_command_valid(const uint8_t cmd[CP2P_COMMAND_LEN]);

/*
 * Decodes a message header from buf[0..avail).
 * Returns: 24 or 44 (bytes of header) with *h filled; 0 if more bytes are
 *   needed; or -(cp2p_reason): -CP2P_R_BAD_COMMAND for an invalid command
 *   field (garbage), -CP2P_R_MALFORMED for an extmsg header whose fixed fields
 *   are wrong. The magic is not checked here (the caller compares it first).
 */
int cp2p_msghdr_decode(const uint8_t *buf, size_t avail, cp2p_msghdr *h);

/* Writes a 24-byte header for payload (checksum computed). cmd <= 12 chars. */
void cp2p_msghdr_encode(uint8_t out[CP2P_HEADER_LEN], const uint8_t magic[4], const char *cmd,
                        const uint8_t *payload, size_t len);
/* Writes a 44-byte extmsg header for an inner command and length. */
void cp2p_msghdr_encode_ext(uint8_t out[CP2P_EXT_HEADER_LEN], const uint8_t magic[4],
                            const char *cmd, uint64_t len);

/* The node's receive limit for a command it is sent (bsv-p2p.md §2.2) is not
 * our concern; this is OUR limit for a received command under the options. */
uint64_t cp2p_recv_limit(const cp2p_options *opt, const char *cmd);

/* ---- payloads: encoders (append to b) ------------------------------------ */

void cp2p_enc_version(cp2p_buf *b, const cp2p_version *v, const uint8_t recv_ip[16],
                      uint16_t recv_port);
void cp2p_enc_protoconf(cp2p_buf *b, uint32_t max_recv, const char *policies /* NULL: 1 field */);
void cp2p_enc_u64(cp2p_buf *b, uint64_t v); /* ping, pong, feefilter */
void cp2p_enc_getheaders(cp2p_buf *b, const uint8_t (*locator)[32], size_t n, const uint8_t *stop);
void cp2p_enc_inv(cp2p_buf *b, const cp2p_inv *items, size_t n); /* inv/getdata/notfound */
void cp2p_enc_headers(cp2p_buf *b, const uint8_t *hdrs, size_t n);
void cp2p_enc_reject(cp2p_buf *b, const cp2p_reject *r);
void cp2p_enc_addr(cp2p_buf *b, const cp2p_addr *a, size_t n);
void cp2p_enc_sendcmpct(cp2p_buf *b, int announce, uint64_t version);
/* mempool: empty (legacy BIP35) when age_s < 0, else 01 + int64 age (BSV). */
void cp2p_enc_mempool(cp2p_buf *b, int64_t age_s);
/* authch (node -> us; encoder for tests): uint32 1, uint32 32, 32 bytes. */
void cp2p_enc_authch(cp2p_buf *b, const uint8_t challenge[32]);

/* Max inv/getdata entries in one message under a payload cap. */
size_t cp2p_inv_max_entries(uint64_t max_payload);

/* ---- payloads: decoders --------------------------------------------------- *
 * Return CP2P_OK or CP2P_EMALFORMED. */

int cp2p_dec_version(const uint8_t *p, size_t len, cp2p_version *v);
int cp2p_dec_protoconf(const uint8_t *p, size_t len, uint64_t *n_fields, uint32_t *max_recv);
int cp2p_dec_u64(const uint8_t *p, size_t len, uint64_t *v);
/* inv/getdata/notfound: *n = count; fills out[0..min(n,max)). */
int cp2p_dec_inv(const uint8_t *p, size_t len, cp2p_inv *out, size_t max, size_t *n);
/* headers: checks count <= 2000 and 81 bytes per entry (trailing tx count must
 * be one CompactSize; its value is ignored); copies 80-byte headers into out
 * (room for max headers). */
int cp2p_dec_headers(const uint8_t *p, size_t len, uint8_t *out, size_t max, size_t *n);
int cp2p_dec_getheaders(const uint8_t *p, size_t len, uint32_t *version, uint8_t (*locator)[32],
                        size_t max, size_t *n, uint8_t stop[32]);
int cp2p_dec_reject(const uint8_t *p, size_t len, cp2p_reject *r);
int cp2p_dec_addr(const uint8_t *p, size_t len, cp2p_addr *out, size_t max, size_t *n);
int cp2p_dec_sendcmpct(const uint8_t *p, size_t len, int *announce, uint64_t *version);
int cp2p_dec_authch(const uint8_t *p, size_t len, uint32_t *version, uint8_t challenge[32]);
/* mempool: *age_s = -1 for the legacy empty form. */
int cp2p_dec_mempool(const uint8_t *p, size_t len, int64_t *age_s);

#endif /* CP2P_CODEC_H */
