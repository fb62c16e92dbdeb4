/*
 * cd_ws.c - websockets (RFC 6455) on the HTTP API servers' evhttp: the
 * handshake, the frame decoder and encoder, the connection with its bounded
 * output. Why and how the connection is taken from evhttp: cd_ws.h.
 *
 * Facts used (RFC 6455): the accept key GUID (§1.3, §4.2.2); frame layout,
 * 7/16/64-bit lengths, the mask, the reserved bits (§5.2); control frames at
 * most 125 bytes and never fragmented (§5.5); the close frame's code and
 * UTF-8 reason, the codes a peer may send (§5.5.1, §7.4); a client's frames
 * are masked, a server's never (§5.1); text is UTF-8 (§8.1).
 */
#include "cd_ws.h"

#include "cd_escape.h"
#include "cd_log.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- handshake ---- */

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" /* RFC 6455 §1.3 */

static int b64_char(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

int cd_ws_accept_key(const char *key, char out[29])
{
    while (*key == ' ' || *key == '\t')
        key++;
    size_t n = strlen(key);
    while (n && (key[n - 1] == ' ' || key[n - 1] == '\t'))
        n--;
    /* 16 bytes in base64: 22 digits and "==" (§4.1: "randomly selected
     * 16-byte value that has been base64-encoded") */
    if (n != 24 || key[22] != '=' || key[23] != '=') {
        errno = EINVAL;
        return -1;
    }
    for (size_t i = 0; i < 22; i++)
        if (!b64_char((unsigned char)key[i])) {
            errno = EINVAL;
            return -1;
        }
    char buf[24 + sizeof(WS_GUID)];
    memcpy(buf, key, 24);
    memcpy(buf + 24, WS_GUID, sizeof(WS_GUID) - 1);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(buf, 24 + sizeof(WS_GUID) - 1, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20) {
        errno = ENOMEM;
        return -1;
    }
    EVP_EncodeBlock((unsigned char *)out, md, 20); /* 28 characters + NUL */
    return 0;
}

/* ---- frames ---- */

size_t cd_ws_frame_header(uint8_t out[CD_WS_HDR_MAX], int fin, int opcode, uint64_t len,
                          const uint8_t *mask)
{
    size_t n = 0;
    out[n++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
    uint8_t m = mask ? 0x80 : 0;
    if (len < 126) {
        out[n++] = (uint8_t)(m | len);
    } else if (len <= 0xffff) {
        out[n++] = m | 126;
        out[n++] = (uint8_t)(len >> 8);
        out[n++] = (uint8_t)len;
    } else {
        out[n++] = m | 127;
        for (int i = 7; i >= 0; i--)
            out[n++] = (uint8_t)(len >> (8 * i));
    }
    if (mask) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

void cd_ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], size_t offset)
{
    for (size_t i = 0; i < len; i++)
        data[i] ^= mask[(i + offset) & 3];
}

int cd_ws_utf8_ok(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) {
            need = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            need = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            need = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (len - i <= need)
            return 0;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += need + 1;
    }
    return 1;
}

/* A close code a peer may send (§7.4.1, §7.4.2; 1012-1014 were registered
 * with IANA since). */
static int close_code_ok(unsigned code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

int cd_ws_dec_feed(cd_ws_dec *d, struct evbuffer *in, cd_ws_msg_fn fn, void *arg, const char **why)
{
    for (;;) {
        size_t n = evbuffer_get_length(in);
        if (n < 2)
            return 0;
        uint8_t h[CD_WS_HDR_MAX];
        evbuffer_copyout(in, h, n < sizeof(h) ? n : sizeof(h));
        int fin = h[0] & 0x80, op = h[0] & 0x0f, masked = h[1] & 0x80;
        if (h[0] & 0x70) {
            *why = "reserved bits set (no extension was negotiated)";
            return CD_WS_CLOSE_PROTOCOL;
        }
        if (op != CD_WS_OP_CONT && op != CD_WS_OP_TEXT && op != CD_WS_OP_BINARY &&
            op != CD_WS_OP_CLOSE && op != CD_WS_OP_PING && op != CD_WS_OP_PONG) {
            *why = "unknown opcode";
            return CD_WS_CLOSE_PROTOCOL;
        }
        if (d->require_mask && !masked) {
            *why = "unmasked frame from a client";
            return CD_WS_CLOSE_PROTOCOL;
        }
        size_t len7 = h[1] & 0x7f, hl = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
        size_t ml = hl;
        if (masked)
            hl += 4;
        if (n < hl)
            return 0;
        uint64_t len = len7;
        if (len7 == 126) {
            len = ((uint64_t)h[2] << 8) | h[3];
        } else if (len7 == 127) {
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | h[2 + i];
            if (len >> 63) {
                *why = "frame length with its top bit set";
                return CD_WS_CLOSE_PROTOCOL;
            }
        }
        int control = op & 0x8;
        if (control) {
            if (!fin) {
                *why = "fragmented control frame";
                return CD_WS_CLOSE_PROTOCOL;
            }
            if (len > 125) {
                *why = "control frame over 125 bytes";
                return CD_WS_CLOSE_PROTOCOL;
            }
        } else {
            if (op == CD_WS_OP_CONT && !d->msg_op) {
                *why = "continuation frame without a message";
                return CD_WS_CLOSE_PROTOCOL;
            }
            if (op != CD_WS_OP_CONT && d->msg_op) {
                *why = "new message inside a fragmented one";
                return CD_WS_CLOSE_PROTOCOL;
            }
            /* refused on the header: an oversize message is never buffered */
            size_t have = d->msg ? evbuffer_get_length(d->msg) : 0;
            if (len > d->max_message || have + len > d->max_message) {
                *why = "message too big";
                return CD_WS_CLOSE_TOO_BIG;
            }
        }
        if ((uint64_t)(n - hl) < len)
            return 0;
        uint8_t mask[4] = {0};
        if (masked)
            memcpy(mask, h + ml, 4);
        evbuffer_drain(in, hl);
        uint8_t *p = len ? evbuffer_pullup(in, (ev_ssize_t)len) : NULL;
        if (len && !p) {
            *why = "out of memory";
            return CD_WS_CLOSE_INTERNAL;
        }
        if (masked)
            cd_ws_mask(p, (size_t)len, mask, 0);
        int rc = 0;
        if (control) {
            if (op == CD_WS_OP_CLOSE) {
                if (len == 1) {
                    *why = "close frame of 1 byte";
                    return CD_WS_CLOSE_PROTOCOL;
                }
                if (len >= 2 && !close_code_ok(((unsigned)p[0] << 8) | p[1])) {
                    *why = "close frame with an invalid code";
                    return CD_WS_CLOSE_PROTOCOL;
                }
                if (len > 2 && !cd_ws_utf8_ok(p + 2, (size_t)len - 2)) {
                    *why = "close reason not UTF-8";
                    return CD_WS_CLOSE_BAD_DATA;
                }
            }
            rc = fn(arg, op, p, (size_t)len);
            evbuffer_drain(in, (size_t)len);
        } else if (fin && op != CD_WS_OP_CONT) {
            if (op == CD_WS_OP_TEXT && !cd_ws_utf8_ok(p, (size_t)len)) {
                *why = "text message not UTF-8";
                return CD_WS_CLOSE_BAD_DATA;
            }
            rc = fn(arg, op, p, (size_t)len);
            evbuffer_drain(in, (size_t)len);
        } else {
            if (!d->msg && !(d->msg = evbuffer_new())) {
                *why = "out of memory";
                return CD_WS_CLOSE_INTERNAL;
            }
            if (op != CD_WS_OP_CONT)
                d->msg_op = op;
            evbuffer_remove_buffer(in, d->msg, (size_t)len);
            if (fin) {
                size_t ml2 = evbuffer_get_length(d->msg);
                uint8_t *m = ml2 ? evbuffer_pullup(d->msg, -1) : NULL;
                if (ml2 && !m) {
                    *why = "out of memory";
                    return CD_WS_CLOSE_INTERNAL;
                }
                if (d->msg_op == CD_WS_OP_TEXT && !cd_ws_utf8_ok(m, ml2)) {
                    *why = "text message not UTF-8";
                    return CD_WS_CLOSE_BAD_DATA;
                }
                int mop = d->msg_op;
                d->msg_op = 0;
                rc = fn(arg, mop, m, ml2);
                evbuffer_drain(d->msg, ml2);
            }
        }
        if (rc)
            return CD_WS_DEC_STOPPED;
    }
}

void cd_ws_dec_free(cd_ws_dec *d)
{
    if (d->msg)
        evbuffer_free(d->msg);
    d->msg = NULL;
    d->msg_op = 0;
}

/* ---- connections ---- */

struct cd_ws {
    struct evhttp_connection *evcon; /* owns the socket and bev */
    struct bufferevent *bev;
    struct event *reap; /* the deferred end, made when it is scheduled */
    cd_ws_dec dec;
    cd_ws_limits lim;
    cd_ws_cbs cbs;
    void *arg;
    unsigned closing : 1;     /* our close frame was queued */
    unsigned peer_closed : 1; /* theirs arrived */
    unsigned ended : 1;       /* the end is scheduled: no more I/O */
    unsigned pinged : 1;      /* a ping went out after silence */
    unsigned above : 1;       /* output went above half of max_output */
    unsigned flush_end : 1;   /* end once the output is flushed */
    int end_code;
    char end_reason[CD_WS_REASON_MAX + 1];
    char peer[64];
};

size_t cd_ws_struct_size(void)
{
    return sizeof(cd_ws);
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
    cd_ws *ws = arg;
    (void)fd;
    (void)what;
    if (ws->cbs.on_close)
        ws->cbs.on_close(ws, ws->end_code, ws->end_reason, ws->arg);
    evhttp_connection_free(ws->evcon); /* frees bev and the parked request, closes */
    cd_ws_dec_free(&ws->dec);
    event_free(ws->reap);
    free(ws);
}

/* Schedules the end: no more I/O; on_close and the frees run from the loop
 * (never inside a caller's call, which may still hold ws). */
static void ws_end(cd_ws *ws, int code, const char *reason)
{
    if (ws->ended)
        return;
    ws->ended = 1;
    ws->end_code = code;
    snprintf(ws->end_reason, sizeof(ws->end_reason), "%s", reason ? reason : "");
    bufferevent_disable(ws->bev, EV_READ | EV_WRITE);
    bufferevent_setcb(ws->bev, NULL, NULL, NULL, NULL);
    ws->reap = event_new(bufferevent_get_base(ws->bev), -1, 0, reap_cb, ws);
    if (!ws->reap) { /* cannot defer: end here (the caller holds no ws) */
        cd_log_error("ws %s: out of memory ending the connection", ws->peer);
        abort();
    }
    event_active(ws->reap, EV_TIMEOUT, 1);
}

/* A control frame, unmasked, whatever the output limit (close, pong: at
 * most 127 bytes each). */
static void send_control(cd_ws *ws, int op, const void *data, size_t len)
{
    uint8_t h[CD_WS_HDR_MAX];
    size_t hl = cd_ws_frame_header(h, 1, op, len, NULL);
    struct evbuffer *out = bufferevent_get_output(ws->bev);
    evbuffer_add(out, h, hl);
    if (len)
        evbuffer_add(out, data, len);
}

static void end_when_flushed(cd_ws *ws)
{
    if (evbuffer_get_length(bufferevent_get_output(ws->bev)) == 0) {
        ws_end(ws, ws->end_code, ws->end_reason);
    } else {
        ws->flush_end = 1;
        bufferevent_setwatermark(ws->bev, EV_WRITE, 0, 0); /* write cb at empty */
    }
}

static int on_frame(void *arg, int op, const uint8_t *data, size_t len)
{
    cd_ws *ws = arg;
    if (ws->ended)
        return 1;
    switch (op) {
    case CD_WS_OP_PING:
        /* a peer pinging without reading would grow our output: the same
         * limit as for messages */
        if (evbuffer_get_length(bufferevent_get_output(ws->bev)) > ws->lim.max_output) {
            cd_log_warn("ws %s: not reading (pings unanswered, %zu bytes queued): closing",
                        ws->peer, evbuffer_get_length(bufferevent_get_output(ws->bev)));
            ws_end(ws, CD_WS_CLOSE_POLICY, "client not reading");
            return 1;
        }
        send_control(ws, CD_WS_OP_PONG, data, len);
        return 0;
    case CD_WS_OP_PONG:
        return 0;
    case CD_WS_OP_CLOSE: {
        ws->peer_closed = 1;
        int code = len >= 2 ? ((int)data[0] << 8) | data[1] : CD_WS_CLOSE_NO_STATUS;
        if (!ws->closing) {
            /* echo it (§5.5.1), then we close the TCP connection first (§7.1.1) */
            ws->closing = 1;
            uint8_t echo[2] = {(uint8_t)(code >> 8), (uint8_t)code};
            send_control(ws, CD_WS_OP_CLOSE, echo, len >= 2 ? 2 : 0);
            ws->end_code = code;
            char r[CD_WS_REASON_MAX + 1];
            size_t rl = len > 2 ? len - 2 : 0;
            memcpy(r, data + 2, rl > CD_WS_REASON_MAX ? CD_WS_REASON_MAX : rl);
            r[rl > CD_WS_REASON_MAX ? CD_WS_REASON_MAX : rl] = 0;
            snprintf(ws->end_reason, sizeof(ws->end_reason), "%s", r);
        }
        end_when_flushed(ws);
        return 1;
    }
    default:
        if (ws->closing) /* after our close, messages are dropped (§5.5.1) */
            return 0;
        if (ws->cbs.on_message)
            ws->cbs.on_message(ws, op, data, len, ws->arg);
        return ws->ended;
    }
}

static void ws_read_cb(struct bufferevent *bev, void *arg)
{
    cd_ws *ws = arg;
    ws->pinged = 0;
    const char *why = NULL;
    int rc = cd_ws_dec_feed(&ws->dec, bufferevent_get_input(bev), on_frame, ws, &why);
    if (rc > 0) {
        cd_log_warn("ws %s: %s: closing with %d", ws->peer, why, rc);
        if (ws->closing) {
            ws_end(ws, rc, why);
        } else {
            cd_ws_close(ws, rc, why);
            bufferevent_disable(bev, EV_READ); /* the decoder is unusable now */
            ws->peer_closed = 1;               /* expect nothing more: end once flushed */
            end_when_flushed(ws);
        }
    }
}

static void ws_write_cb(struct bufferevent *bev, void *arg)
{
    cd_ws *ws = arg;
    if (ws->flush_end) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            ws_end(ws, ws->end_code, ws->end_reason);
        return;
    }
    if (ws->above && !ws->closing) {
        ws->above = 0;
        if (ws->cbs.on_drain)
            ws->cbs.on_drain(ws, ws->arg);
    }
}

static void ws_event_cb(struct bufferevent *bev, short what, void *arg)
{
    cd_ws *ws = arg;
    if (what & BEV_EVENT_TIMEOUT) {
        if (what & BEV_EVENT_WRITING) {
            cd_log_warn("ws %s: not reading (%zu bytes queued for %d s): dropped", ws->peer,
                        evbuffer_get_length(bufferevent_get_output(bev)), ws->lim.write_timeout_s);
            ws_end(ws, CD_WS_CLOSE_POLICY, "client not reading");
        } else if (ws->closing) {
            /* no answer to our close: fine while the peer still reads what
             * was queued before it (the write timeout catches one that
             * does not); else the end */
            if (evbuffer_get_length(bufferevent_get_output(bev))) {
                bufferevent_enable(bev, EV_READ);
                return;
            }
            ws_end(ws, ws->end_code, ws->end_reason);
        } else if (!ws->pinged) {
            ws->pinged = 1;
            send_control(ws, CD_WS_OP_PING, NULL, 0);
            bufferevent_enable(bev, EV_READ); /* a timeout disabled it */
        } else {
            cd_log_info("ws %s: silent after a ping: dropped", ws->peer);
            ws_end(ws, CD_WS_CLOSE_GOING_AWAY, "no answer to ping");
        }
        return;
    }
    /* EOF or error: the peer is gone */
    if (!ws->peer_closed)
        ws_end(ws, CD_WS_CLOSE_ABNORMAL, "connection closed without a close frame");
    else
        ws_end(ws, ws->end_code, ws->end_reason);
}

/* 1 if the comma-separated header value holds token (case-insensitive). */
static int has_token(const char *v, const char *token)
{
    size_t tl = strlen(token);
    while (v && *v) {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        const char *e = v;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > v && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - v) == tl && !strncasecmp(v, token, tl))
            return 1;
        v = e;
    }
    return 0;
}

static void refuse(struct evhttp_request *req, int code, const char *why)
{
    struct evbuffer *b = evbuffer_new();
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    evhttp_add_header(oh, "Content-Type", "application/json");
    if (code == 426)
        evhttp_add_header(oh, "Sec-WebSocket-Version", "13");
    if (b)
        evbuffer_add_printf(b, "{\"error\": \"%s\", \"code\": \"%s\"}\n", why,
                            code == 426 ? "upgrade_required" : "bad_request");
    evhttp_send_reply(req, code, code == 426 ? "Upgrade Required" : "Bad Request", b);
    if (b)
        evbuffer_free(b);
}

cd_ws *cd_ws_upgrade(struct evhttp_request *req, const cd_ws_limits *lim, const cd_ws_cbs *cbs,
                     void *arg)
{
    struct evkeyvalq *ih = evhttp_request_get_input_headers(req);
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    char *host = NULL;
    ev_uint16_t port = 0;
    if (evcon)
        evhttp_connection_get_peer(evcon, &host, &port);
    char peer[64];
    snprintf(peer, sizeof(peer), "%s:%u", host ? host : "?", (unsigned)port);

    const char *up = evhttp_find_header(ih, "Upgrade");
    const char *conn = evhttp_find_header(ih, "Connection");
    const char *ver = evhttp_find_header(ih, "Sec-WebSocket-Version");
    const char *key = evhttp_find_header(ih, "Sec-WebSocket-Key");
    char accept[29];
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET || !has_token(up, "websocket") ||
        !has_token(conn, "upgrade")) {
        char eu[CD_ESCAPED_LEN(32)], ec[CD_ESCAPED_LEN(32)];
        cd_escape(eu, sizeof(eu), up ? up : "", up ? strlen(up) : 0);
        cd_escape(ec, sizeof(ec), conn ? conn : "", conn ? strlen(conn) : 0);
        cd_log_info("ws %s: not a websocket handshake (%s, Upgrade '%s', Connection '%s'): 400",
                    peer, evhttp_request_get_command(req) == EVHTTP_REQ_GET ? "GET" : "not GET", eu,
                    ec);
        refuse(req, 400,
               "not a websocket handshake: GET with Upgrade: websocket and "
               "Connection: Upgrade expected");
        return NULL;
    }
    if (!ver || strcmp(ver, "13") != 0) {
        cd_log_info("ws %s: websocket version '%s' (13 expected): 426", peer,
                    cd_escape_str(ver ? ver : ""));
        refuse(req, 426, "Sec-WebSocket-Version 13 expected");
        return NULL;
    }
    if (!key || cd_ws_accept_key(key, accept) != 0) {
        cd_log_info("ws %s: bad Sec-WebSocket-Key '%s': 400", peer, cd_escape_str(key ? key : ""));
        refuse(req, 400, "Sec-WebSocket-Key must be 16 bytes in base64");
        return NULL;
    }
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    cd_ws *ws = bev ? calloc(1, sizeof(*ws)) : NULL;
    if (!ws) {
        evhttp_send_error(req, 500, NULL);
        return NULL;
    }
    ws->evcon = evcon;
    ws->bev = bev;
    ws->lim = *lim;
    ws->cbs = *cbs;
    ws->arg = arg;
    ws->dec.max_message = lim->max_message;
    ws->dec.require_mask = 1;
    memcpy(ws->peer, peer, sizeof(peer));
    /* the 101 goes out raw on the connection: evhttp's reply functions
     * would leave it expecting a body and owning the socket again */
    evbuffer_add_printf(bufferevent_get_output(bev),
                        "HTTP/1.1 101 Switching Protocols\r\n"
                        "Upgrade: websocket\r\n"
                        "Connection: Upgrade\r\n"
                        "Sec-WebSocket-Accept: %s\r\n\r\n",
                        accept);
    bufferevent_setcb(bev, ws_read_cb, ws_write_cb, ws_event_cb, ws);
    /* reading stops while this much is buffered and unparsed: a frame is
     * refused on its header when over max_message, so this bounds input */
    bufferevent_setwatermark(bev, EV_READ, 0, lim->max_message + CD_WS_HDR_MAX + 65536);
    bufferevent_setwatermark(bev, EV_WRITE, lim->max_output / 2, 0);
    struct timeval rt = {lim->ping_s, 0}, wt = {lim->write_timeout_s, 0};
    bufferevent_set_timeouts(bev, lim->ping_s > 0 ? &rt : NULL,
                             lim->write_timeout_s > 0 ? &wt : NULL);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    /* frames sent right behind the handshake are already in the input */
    if (evbuffer_get_length(bufferevent_get_input(bev)))
        bufferevent_trigger(bev, EV_READ, BEV_OPT_DEFER_CALLBACKS);
    return ws;
}

int cd_ws_send(cd_ws *ws, int opcode, const void *data, size_t len)
{
    if (ws->closing || ws->ended) {
        errno = EPIPE;
        return -1;
    }
    if (opcode != CD_WS_OP_TEXT && opcode != CD_WS_OP_BINARY) {
        errno = EINVAL;
        return -1;
    }
    struct evbuffer *out = bufferevent_get_output(ws->bev);
    size_t q = evbuffer_get_length(out);
    if (q + len + CD_WS_HDR_MAX > ws->lim.max_output) {
        ws->above = 1; /* on_drain when there is room again */
        errno = ENOBUFS;
        return -1;
    }
    uint8_t h[CD_WS_HDR_MAX];
    size_t hl = cd_ws_frame_header(h, 1, opcode, len, NULL);
    if (evbuffer_add(out, h, hl) != 0 || (len && evbuffer_add(out, data, len) != 0)) {
        errno = ENOMEM;
        return -1;
    }
    if (evbuffer_get_length(out) > ws->lim.max_output / 2)
        ws->above = 1;
    return 0;
}

void cd_ws_close(cd_ws *ws, int code, const char *reason)
{
    if (ws->closing || ws->ended)
        return;
    ws->closing = 1;
    size_t rl = reason ? strlen(reason) : 0;
    if (rl > CD_WS_REASON_MAX)
        rl = CD_WS_REASON_MAX;
    uint8_t p[2 + CD_WS_REASON_MAX];
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    if (rl)
        memcpy(p + 2, reason, rl);
    send_control(ws, CD_WS_OP_CLOSE, p, 2 + rl);
    ws->end_code = code;
    snprintf(ws->end_reason, sizeof(ws->end_reason), "%.*s", (int)rl, reason ? reason : "");
    /* wait for the peer's close, at most write_timeout_s (the read timeout
     * now means "no answer to our close") */
    struct timeval t = {ws->lim.write_timeout_s > 0 ? ws->lim.write_timeout_s : 10, 0};
    bufferevent_set_timeouts(ws->bev, &t, &t);
}

void cd_ws_abort(cd_ws *ws, const char *reason)
{
    if (!ws->ended) {
        ws->ended = 1;
        ws->end_code = CD_WS_CLOSE_ABNORMAL;
        snprintf(ws->end_reason, sizeof(ws->end_reason), "%s", reason ? reason : "");
        bufferevent_disable(ws->bev, EV_READ | EV_WRITE);
        bufferevent_setcb(ws->bev, NULL, NULL, NULL, NULL);
        ws->reap = event_new(bufferevent_get_base(ws->bev), -1, 0, reap_cb, ws);
    }
    if (ws->reap)
        event_del(ws->reap);
    /* reap_cb frees ws->reap too; without one (out of memory) make do */
    if (!ws->reap) {
        if (ws->cbs.on_close)
            ws->cbs.on_close(ws, ws->end_code, ws->end_reason, ws->arg);
        evhttp_connection_free(ws->evcon);
        cd_ws_dec_free(&ws->dec);
        free(ws);
        return;
    }
    reap_cb(-1, 0, ws);
}

size_t cd_ws_queued(const cd_ws *ws)
{
    return evbuffer_get_length(bufferevent_get_output(ws->bev));
}

const char *cd_ws_peer(const cd_ws *ws)
{
    return ws->peer;
}

int cd_ws_closing(const cd_ws *ws)
{
    return ws->closing || ws->ended;
}
