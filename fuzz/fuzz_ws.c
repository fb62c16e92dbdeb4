/*
 * fuzz_ws.c - libFuzzer target for the websocket frame decoder
 * (src/api/cd_ws.c, cd_ws_dec_feed): the bytes a client sends after the
 * handshake, as they may arrive.
 *
 * Input: byte 0 picks the limit (max_message 0..255 bytes, so the size
 * checks are reached), byte 1 the cut points; the rest is the client's
 * stream. It is decoded twice: all at once, and in pieces (lengths taken
 * from byte 1's generator), as TCP may deliver it.
 *
 * Oracles: both ways give the same messages (opcode, bytes) in the same
 * order and the same outcome (0 or the same close code); no data message is
 * longer than max_message, no control frame longer than 125 bytes; a text
 * message is UTF-8 (cd_ws_utf8_ok); an outcome other than 0 is a close code
 * of the list in cd_ws.h with a reason.
 *
 * Built only with -Dfuzz=true and clang (scripts/fuzz.sh).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "cd_ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_ws: check failed: %s (line %d)\n", #c, __LINE__);             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* What one decoding produced: a running hash of the messages, their count. */
typedef struct seen {
    size_t max;
    unsigned n;
    uint64_t h;
} seen;

static int on_msg(void *arg, int op, const uint8_t *p, size_t len)
{
    seen *s = arg;
    if (op == CD_WS_OP_TEXT || op == CD_WS_OP_BINARY)
        CHECK(len <= s->max);
    else
        CHECK(len <= 125);
    if (op == CD_WS_OP_TEXT)
        CHECK(cd_ws_utf8_ok(p, len));
    s->h = (s->h ^ (uint64_t)op) * UINT64_C(1099511628211);
    s->h = (s->h ^ len) * UINT64_C(1099511628211);
    for (size_t i = 0; i < len; i++)
        s->h = (s->h ^ p[i]) * UINT64_C(1099511628211);
    s->n++;
    return 0;
}

/* Decodes data[0..n) in pieces of the given lengths (0: all at once). */
static int run(const uint8_t *d, size_t n, size_t max, uint8_t seed, seen *s)
{
    cd_ws_dec dec;
    memset(&dec, 0, sizeof(dec));
    dec.max_message = max;
    dec.require_mask = 1;
    memset(s, 0, sizeof(*s));
    s->max = max;
    s->h = UINT64_C(14695981039346656037);
    struct evbuffer *in = evbuffer_new();
    CHECK(in);
    const char *why = NULL;
    int rc = 0;
    size_t off = 0;
    uint32_t x = seed | 1u;
    while (off < n && rc == 0) {
        size_t piece = n - off;
        if (seed) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            piece = 1 + x % 17;
            if (piece > n - off)
                piece = n - off;
        }
        evbuffer_add(in, d + off, piece);
        off += piece;
        rc = cd_ws_dec_feed(&dec, in, on_msg, s, &why);
    }
    if (rc != 0) {
        CHECK(why != NULL && *why);
        CHECK(rc == CD_WS_CLOSE_PROTOCOL || rc == CD_WS_CLOSE_BAD_DATA ||
              rc == CD_WS_CLOSE_TOO_BIG || rc == CD_WS_CLOSE_INTERNAL);
    }
    cd_ws_dec_free(&dec);
    evbuffer_free(in);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t max = data[0];
    uint8_t seed = data[1] ? data[1] : 1;
    seen a, b;
    int ra = run(data + 2, size - 2, max, 0, &a);
    int rb = run(data + 2, size - 2, max, seed, &b);
    CHECK(ra == rb);
    CHECK(a.n == b.n);
    CHECK(a.h == b.h);
    return 0;
}
