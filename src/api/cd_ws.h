/*
 * cd_ws.h - websockets (RFC 6455) on the HTTP API servers' evhttp.
 *
 * libevent 2.1 has no websocket support (2.2's evws is not released in
 * Debian), so this module does the three parts itself:
 *   1. the handshake: cd_ws_upgrade() checks the client's GET (Upgrade,
 *      Connection, Sec-WebSocket-Version 13, a Sec-WebSocket-Key of 16
 *      base64 bytes), answers 101 with Sec-WebSocket-Accept
 *      (cd_ws_accept_key: SHA-1 of key + the RFC's GUID, base64) and takes
 *      the connection over from evhttp;
 *   2. the frame decoder (cd_ws_dec: pure, no socket, unit-tested): masking
 *      required from clients, fragmented messages reassembled up to a size
 *      limit, control frames (ping/pong/close) between fragments, text
 *      checked to be UTF-8; every violation is a close code (1002, 1007,
 *      1009) with a reason;
 *   3. the connection (cd_ws): replies to pings, answers a close, sends
 *      text/binary/close frames with a bounded output buffer, pings an idle
 *      peer and drops one that stays silent.
 *
 * Taking over from evhttp: the supported public calls are
 * evhttp_request_get_connection() and evhttp_connection_get_bufferevent()
 * (event2/http.h, 2.1). The request callback writes the 101 itself on that
 * bufferevent and replaces its callbacks with ours (bufferevent_setcb), so
 * evhttp, which keeps the request parked in its "writing" state, never sees
 * the connection again; the evhttp_connection stays the owner of the
 * socket and is freed (evhttp_connection_free) when the websocket ends.
 * Freeing it is what libevent's own 2.2 websocket code (ws.c,
 * evws_connection_free) does too. evhttp_free() frees every connection it
 * still owns, so the server calls cd_ws_abort() on its websockets first.
 *
 * Lifecycle: cd_ws_upgrade() returns the connection; the caller's on_close
 * runs exactly once when it ends for any reason (peer close, protocol
 * error, cd_ws_close() done, dead peer, cd_ws_abort), from the event loop,
 * never from inside a call the caller made, and the cd_ws is freed right
 * after on_close returns. Single-threaded: one event loop.
 *
 * Errors follow cd_err.h's POSIX style: -1 with errno set.
 */
#ifndef CD_WS_H
#define CD_WS_H

#include <stddef.h>
#include <stdint.h>

#include "cd_err.h" /* CD_WARN_UNUSED */

struct evbuffer;
struct evhttp_request;

/* Opcodes (RFC 6455 §5.2). */
#define CD_WS_OP_CONT   0x0
#define CD_WS_OP_TEXT   0x1
#define CD_WS_OP_BINARY 0x2
#define CD_WS_OP_CLOSE  0x8
#define CD_WS_OP_PING   0x9
#define CD_WS_OP_PONG   0xA

/* Close codes (RFC 6455 §7.4.1). */
#define CD_WS_CLOSE_NORMAL      1000
#define CD_WS_CLOSE_GOING_AWAY  1001
#define CD_WS_CLOSE_PROTOCOL    1002
#define CD_WS_CLOSE_UNSUPPORTED 1003
#define CD_WS_CLOSE_NO_STATUS   1005 /* never sent: "the close frame had no code" */
#define CD_WS_CLOSE_ABNORMAL    1006 /* never sent: "no close frame at all" */
#define CD_WS_CLOSE_BAD_DATA    1007
#define CD_WS_CLOSE_POLICY      1008
#define CD_WS_CLOSE_TOO_BIG     1009
#define CD_WS_CLOSE_INTERNAL    1011
#define CD_WS_CLOSE_TRY_AGAIN   1013

/* A close frame's reason fits a control frame: 125 - 2 bytes of code. */
#define CD_WS_REASON_MAX 123
/* Longest frame header: 2 + 8 (64-bit length) + 4 (mask). */
#define CD_WS_HDR_MAX    14

/* ---- handshake ---- */

/*
 * Sec-WebSocket-Accept for a client's Sec-WebSocket-Key (RFC 6455 §4.2.2:
 * base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))).
 * In: key, NUL-terminated, surrounding spaces ignored; must be the base64
 *     of 16 bytes (24 characters).
 * Out: out, 28 characters and a NUL.
 * Returns: 0; -1 (errno EINVAL) when the key is not 16 base64 bytes.
 */
int cd_ws_accept_key(const char *key, char out[29]) CD_WARN_UNUSED;

/* ---- frames ---- */

/*
 * Writes a frame header.
 * In: fin (0/1), opcode, len (payload bytes), mask: 4 bytes, or NULL for an
 *     unmasked (server) frame.
 * Out: out, CD_WS_HDR_MAX bytes suffice.
 * Returns: the header's length.
 */
size_t cd_ws_frame_header(uint8_t out[CD_WS_HDR_MAX], int fin, int opcode, uint64_t len,
                          const uint8_t *mask);

/* XORs data[0..len) with mask, starting at mask byte `offset` % 4. */
void cd_ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], size_t offset);

/* 1 if s[0..len) is well-formed UTF-8 (no overlongs, surrogates or code
 * points above U+10FFFF), else 0. */
int cd_ws_utf8_ok(const uint8_t *s, size_t len);

/* The decoder: fed what arrived, calls back once per whole message or
 * control frame, payload unmasked. Zero it, set the fields, then call
 * cd_ws_dec_free() when done. */
typedef struct cd_ws_dec {
    size_t max_message; /* a data message (all its fragments) longer is 1009 */
    int require_mask;   /* 1 on a server: an unmasked frame is 1002 */
    /* private */
    struct evbuffer *msg; /* fragments of the message being reassembled */
    int msg_op;           /* its opcode; 0 while none */
} cd_ws_dec;

/*
 * What the decoder calls: opcode is TEXT or BINARY (a whole message, text
 * checked as UTF-8) or PING, PONG, CLOSE (payload as sent: for CLOSE, the
 * code and reason, checked by the decoder). data is valid for the call.
 * Returns: 0 to go on, nonzero to stop decoding (e.g. the connection is
 * closing): cd_ws_dec_feed() then returns CD_WS_DEC_STOPPED.
 */
typedef int (*cd_ws_msg_fn)(void *arg, int opcode, const uint8_t *data, size_t len);

#define CD_WS_DEC_STOPPED (-1)

/*
 * Decodes the frames complete in `in`, draining them (an incomplete frame
 * stays in `in` until more arrives).
 * Out: why: on a violation, a static reason (for the close frame and the
 *      log).
 * Returns: 0 when everything complete was consumed; CD_WS_DEC_STOPPED when
 *          fn asked to stop; a close code on a violation: 1002 (unmasked,
 *          reserved bits, unknown opcode, bad continuation, bad control
 *          frame, bad close code), 1007 (text not UTF-8), 1009 (message over
 *          max_message); the decoder is unusable after a violation.
 */
int cd_ws_dec_feed(cd_ws_dec *d, struct evbuffer *in, cd_ws_msg_fn fn, void *arg,
                   const char **why) CD_WARN_UNUSED;

/* Frees the decoder's buffer (the struct is the caller's). */
void cd_ws_dec_free(cd_ws_dec *d);

/* ---- connections ---- */

typedef struct cd_ws cd_ws;

typedef struct cd_ws_limits {
    size_t max_message;  /* a client message longer: close 1009 */
    size_t max_output;   /* bytes queued to the client beyond which
                          * cd_ws_send() refuses (ENOBUFS) */
    int ping_s;          /* a silent peer is pinged after this many seconds,
                          * and dropped (1001) after twice as many */
    int write_timeout_s; /* output that does not move for this long: the
                          * peer is gone or not reading; dropped */
} cd_ws_limits;

typedef struct cd_ws_cbs {
    /* A text or binary message (whole, unmasked; text is UTF-8). */
    void (*on_message)(cd_ws *ws, int opcode, const uint8_t *data, size_t len, void *arg);
    /* The output queue fell to half of max_output or less after it was
     * above, or after cd_ws_send refused a message (to resume a replay);
     * may be NULL. */
    void (*on_drain)(cd_ws *ws, void *arg);
    /* The end, exactly once: code and reason are the peer's close frame or
     * ours (1006 without any). ws is freed after this returns. */
    void (*on_close)(cd_ws *ws, int code, const char *reason, void *arg);
} cd_ws_cbs;

/*
 * Checks a websocket handshake and, if it is one, answers 101 and takes the
 * connection over from evhttp.
 * In: req: a GET evhttp handed to a request callback (no reply sent yet);
 *     lim, cbs: copied; arg: passed to the callbacks.
 * Out: on failure a reply was sent: 400 (not a websocket handshake, bad
 *      key), 426 with Sec-WebSocket-Version: 13 (another version), 500.
 * Returns: the connection, or NULL (reply sent).
 */
cd_ws *cd_ws_upgrade(struct evhttp_request *req, const cd_ws_limits *lim, const cd_ws_cbs *cbs,
                     void *arg) CD_WARN_UNUSED;

/*
 * Queues one message (a single frame).
 * In: opcode: CD_WS_OP_TEXT or CD_WS_OP_BINARY; data[0..len).
 * Returns: 0; -1 with errno ENOBUFS (queued bytes + this frame would pass
 *          max_output: nothing queued; the caller decides, usually
 *          cd_ws_close 1008/1013), EPIPE (closing), EINVAL (bad opcode),
 *          ENOMEM.
 */
int cd_ws_send(cd_ws *ws, int opcode, const void *data, size_t len) CD_WARN_UNUSED;

/*
 * Starts the closing handshake: queues a close frame (code, reason cut to
 * CD_WS_REASON_MAX bytes; always queued, whatever the output limit) and
 * stops reading messages. The connection ends (on_close) when the peer
 * answers, or after write_timeout_s. A second call does nothing.
 */
void cd_ws_close(cd_ws *ws, int code, const char *reason);

/* Ends the connection now (no close frame); on_close(1006, reason) runs
 * before this returns and ws is freed. For a server shutting down: never
 * from inside one of ws's own callbacks (use cd_ws_close there). */
void cd_ws_abort(cd_ws *ws, const char *reason);

/* Bytes queued to the client. */
size_t cd_ws_queued(const cd_ws *ws);

/* "host:port" of the peer (valid while ws lives). */
const char *cd_ws_peer(const cd_ws *ws);

/* 1 once cd_ws_close() was called or a close frame arrived. */
int cd_ws_closing(const cd_ws *ws);

/* Bytes a connection costs this module (the struct; libevent's and the
 * kernel's buffers are extra): for docs/PERFORMANCE.md. */
size_t cd_ws_struct_size(void);

#endif /* CD_WS_H */
