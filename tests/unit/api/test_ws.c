/*
 * test_ws.c - the websocket module (src/api/cd_ws.c): the accept key
 * (RFC 6455's own example), frame headers, the UTF-8 check, the decoder on
 * byte strings (the RFC's masked "Hello", fragments with a ping between
 * them, byte-by-byte arrival, every violation and its close code), and a
 * real connection: an evhttp server in a forked child upgrading with
 * cd_ws_upgrade() and echoing, a blocking client over TCP in the test.
 */
#include "cd_test.h"

#include "cd_ws.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- handshake, frames ---- */

START_TEST(accept_key_rfc_example)
{
    char out[29];
    /* RFC 6455 §1.3 */
    ck_assert_int_eq(cd_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
    ck_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    ck_assert_int_eq(cd_ws_accept_key("  dGhlIHNhbXBsZSBub25jZQ== ", out), 0);
    ck_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    ck_assert_int_eq(cd_ws_accept_key("", out), -1);
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_int_eq(cd_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ", out), -1);
    ck_assert_int_eq(cd_ws_accept_key("dGhlIHNhbXBsZSBub25j!Q==", out), -1);
    ck_assert_int_eq(cd_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==AAAA", out), -1);
}
END_TEST

START_TEST(frame_header_lengths)
{
    uint8_t h[CD_WS_HDR_MAX];
    ck_assert_uint_eq(cd_ws_frame_header(h, 1, CD_WS_OP_TEXT, 5, NULL), 2);
    ck_assert_uint_eq(h[0], 0x81);
    ck_assert_uint_eq(h[1], 5);
    ck_assert_uint_eq(cd_ws_frame_header(h, 1, CD_WS_OP_BINARY, 125, NULL), 2);
    ck_assert_uint_eq(h[1], 125);
    ck_assert_uint_eq(cd_ws_frame_header(h, 0, CD_WS_OP_TEXT, 126, NULL), 4);
    ck_assert_uint_eq(h[0], 0x01);
    ck_assert_uint_eq(h[1], 126);
    ck_assert_uint_eq(h[2], 0);
    ck_assert_uint_eq(h[3], 126);
    ck_assert_uint_eq(cd_ws_frame_header(h, 1, CD_WS_OP_TEXT, 65535, NULL), 4);
    ck_assert_uint_eq(h[2], 0xff);
    ck_assert_uint_eq(h[3], 0xff);
    ck_assert_uint_eq(cd_ws_frame_header(h, 1, CD_WS_OP_TEXT, 65536, NULL), 10);
    ck_assert_uint_eq(h[1], 127);
    ck_assert_uint_eq(h[7], 1);
    ck_assert_uint_eq(h[8], 0);
    const uint8_t m[4] = {1, 2, 3, 4};
    ck_assert_uint_eq(cd_ws_frame_header(h, 1, CD_WS_OP_PING, 0, m), 6);
    ck_assert_uint_eq(h[0], 0x89);
    ck_assert_uint_eq(h[1], 0x80);
    ck_assert_mem_eq(h + 2, m, 4);
}
END_TEST

START_TEST(utf8_check)
{
    ck_assert(cd_ws_utf8_ok((const uint8_t *)"", 0));
    ck_assert(cd_ws_utf8_ok((const uint8_t *)"hello", 5));
    ck_assert(cd_ws_utf8_ok((const uint8_t *)"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9));
    ck_assert(!cd_ws_utf8_ok((const uint8_t *)"\xc3", 1));             /* cut */
    ck_assert(!cd_ws_utf8_ok((const uint8_t *)"\xc0\xaf", 2));         /* overlong */
    ck_assert(!cd_ws_utf8_ok((const uint8_t *)"\xed\xa0\x80", 3));     /* surrogate */
    ck_assert(!cd_ws_utf8_ok((const uint8_t *)"\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    ck_assert(!cd_ws_utf8_ok((const uint8_t *)"\xff", 1));
    ck_assert(!cd_ws_utf8_ok((const uint8_t *)"a\x80", 2));
}
END_TEST

/* ---- decoder ---- */

typedef struct got {
    int n;
    int op[16];
    char data[16][256];
    size_t len[16];
    int stop_after; /* return nonzero after this many calls (0: never) */
} got;

static int collect(void *arg, int op, const uint8_t *data, size_t len)
{
    got *g = arg;
    ck_assert_int_lt(g->n, 16);
    g->op[g->n] = op;
    g->len[g->n] = len;
    if (len)
        memcpy(g->data[g->n], data, len < 255 ? len : 255);
    g->n++;
    return g->stop_after && g->n >= g->stop_after;
}

/* A client frame: masked with a fixed key. */
static void put_frame(struct evbuffer *b, int fin, int op, const void *p, size_t len)
{
    static const uint8_t m[4] = {0x37, 0xfa, 0x21, 0x3d};
    uint8_t h[CD_WS_HDR_MAX];
    size_t hl = cd_ws_frame_header(h, fin, op, len, m);
    evbuffer_add(b, h, hl);
    uint8_t *c = malloc(len + 1);
    memcpy(c, p, len);
    cd_ws_mask(c, len, m, 0);
    evbuffer_add(b, c, len);
    free(c);
}

static int feed(cd_ws_dec *d, struct evbuffer *in, got *g, const char **why)
{
    return cd_ws_dec_feed(d, in, collect, g, why);
}

START_TEST(dec_rfc_hello)
{
    /* RFC 6455 §5.7: a single-frame masked text message "Hello" */
    static const uint8_t f[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    cd_ws_dec d = {.max_message = 1024, .require_mask = 1};
    struct evbuffer *in = evbuffer_new();
    got g = {0};
    const char *why = NULL;
    /* byte by byte: nothing until the last */
    for (size_t i = 0; i < sizeof(f); i++) {
        evbuffer_add(in, f + i, 1);
        ck_assert_int_eq(feed(&d, in, &g, &why), 0);
        ck_assert_int_eq(g.n, i + 1 == sizeof(f) ? 1 : 0);
    }
    ck_assert_int_eq(g.op[0], CD_WS_OP_TEXT);
    ck_assert_uint_eq(g.len[0], 5);
    ck_assert_mem_eq(g.data[0], "Hello", 5);
    ck_assert_uint_eq(evbuffer_get_length(in), 0);
    cd_ws_dec_free(&d);
    evbuffer_free(in);
}
END_TEST

START_TEST(dec_fragments_and_control)
{
    cd_ws_dec d = {.max_message = 1024, .require_mask = 1};
    struct evbuffer *in = evbuffer_new();
    got g = {0};
    const char *why = NULL;
    put_frame(in, 0, CD_WS_OP_TEXT, "Hel", 3);
    put_frame(in, 1, CD_WS_OP_PING, "p", 1); /* between fragments (§5.4) */
    put_frame(in, 0, CD_WS_OP_CONT, "l", 1);
    put_frame(in, 1, CD_WS_OP_CONT, "o", 1);
    char big[300];
    memset(big, 'x', sizeof(big));
    put_frame(in, 1, CD_WS_OP_BINARY, big, sizeof(big)); /* 16-bit length */
    put_frame(in, 1, CD_WS_OP_CLOSE,
              "\x03\xe8"
              "bye",
              5);
    ck_assert_int_eq(feed(&d, in, &g, &why), 0);
    ck_assert_int_eq(g.n, 4);
    ck_assert_int_eq(g.op[0], CD_WS_OP_PING);
    ck_assert_mem_eq(g.data[0], "p", 1);
    ck_assert_int_eq(g.op[1], CD_WS_OP_TEXT);
    ck_assert_uint_eq(g.len[1], 5);
    ck_assert_mem_eq(g.data[1], "Hello", 5);
    ck_assert_int_eq(g.op[2], CD_WS_OP_BINARY);
    ck_assert_uint_eq(g.len[2], 300);
    ck_assert_int_eq(g.op[3], CD_WS_OP_CLOSE);
    ck_assert_mem_eq(g.data[3],
                     "\x03\xe8"
                     "bye",
                     5);
    cd_ws_dec_free(&d);
    evbuffer_free(in);
}
END_TEST

START_TEST(dec_stop)
{
    cd_ws_dec d = {.max_message = 1024, .require_mask = 1};
    struct evbuffer *in = evbuffer_new();
    got g = {.stop_after = 1};
    const char *why = NULL;
    put_frame(in, 1, CD_WS_OP_TEXT, "a", 1);
    put_frame(in, 1, CD_WS_OP_TEXT, "b", 1);
    ck_assert_int_eq(feed(&d, in, &g, &why), CD_WS_DEC_STOPPED);
    ck_assert_int_eq(g.n, 1);
    ck_assert_uint_gt(evbuffer_get_length(in), 0); /* "b" is left */
    cd_ws_dec_free(&d);
    evbuffer_free(in);
}
END_TEST

/* One violation: the close code and that nothing was delivered. */
static void violation(const uint8_t *bytes, size_t n, int code, const char *why_part)
{
    cd_ws_dec d = {.max_message = 1000, .require_mask = 1};
    struct evbuffer *in = evbuffer_new();
    evbuffer_add(in, bytes, n);
    got g = {0};
    const char *why = NULL;
    ck_assert_int_eq(feed(&d, in, &g, &why), code);
    ck_assert_ptr_nonnull(why);
    ck_assert_msg(strstr(why, why_part) != NULL, "why '%s' lacks '%s'", why, why_part);
    ck_assert_int_eq(g.n, 0);
    cd_ws_dec_free(&d);
    evbuffer_free(in);
}

START_TEST(dec_violations)
{
    /* unmasked text frame from a client */
    violation((const uint8_t *)"\x81\x02hi", 4, CD_WS_CLOSE_PROTOCOL, "unmasked");
    /* opcode 3 (reserved) */
    violation((const uint8_t *)"\x83\x80\0\0\0\0", 6, CD_WS_CLOSE_PROTOCOL, "opcode");
    /* opcode 0xB (reserved control) */
    violation((const uint8_t *)"\x8b\x80\0\0\0\0", 6, CD_WS_CLOSE_PROTOCOL, "opcode");
    /* RSV1 */
    violation((const uint8_t *)"\xc1\x80\0\0\0\0", 6, CD_WS_CLOSE_PROTOCOL, "reserved");
    /* continuation with no message */
    violation((const uint8_t *)"\x80\x80\0\0\0\0", 6, CD_WS_CLOSE_PROTOCOL, "continuation");
    /* fragmented ping */
    violation((const uint8_t *)"\x09\x80\0\0\0\0", 6, CD_WS_CLOSE_PROTOCOL, "fragmented");
    /* ping of 126 bytes (header only: refused before the payload) */
    violation((const uint8_t *)"\x89\xfe\x00\x7e\0\0\0\0", 8, CD_WS_CLOSE_PROTOCOL, "125");
    /* a 1001-byte message over max_message 1000: refused on the header */
    violation((const uint8_t *)"\x82\xfe\x03\xe9\0\0\0\0", 8, CD_WS_CLOSE_TOO_BIG, "too big");
    /* a 2^40-byte frame */
    violation((const uint8_t *)"\x82\xff\0\0\x01\0\0\0\0\0\0\0\0\0", 14, CD_WS_CLOSE_TOO_BIG,
              "too big");
    /* top bit of the 64-bit length */
    violation((const uint8_t *)"\x82\xff\x80\0\0\0\0\0\0\x01\0\0\0\0", 14, CD_WS_CLOSE_PROTOCOL,
              "top bit");
    /* text that is not UTF-8 (mask 0: payload as is) */
    violation((const uint8_t *)"\x81\x82\0\0\0\0\xc3\x28", 8, CD_WS_CLOSE_BAD_DATA, "UTF-8");
    /* close frames: 1 byte; code 1005 (never sent); code 999 */
    violation((const uint8_t *)"\x88\x81\0\0\0\0\x03", 7, CD_WS_CLOSE_PROTOCOL, "1 byte");
    violation((const uint8_t *)"\x88\x82\0\0\0\0\x03\xed", 8, CD_WS_CLOSE_PROTOCOL, "code");
    violation((const uint8_t *)"\x88\x82\0\0\0\0\x03\xe7", 8, CD_WS_CLOSE_PROTOCOL, "code");
    /* close reason not UTF-8 */
    violation((const uint8_t *)"\x88\x83\0\0\0\0\x03\xe8\xff", 9, CD_WS_CLOSE_BAD_DATA, "UTF-8");
}
END_TEST

START_TEST(dec_fragments_over_limit)
{
    cd_ws_dec d = {.max_message = 10, .require_mask = 1};
    struct evbuffer *in = evbuffer_new();
    got g = {0};
    const char *why = NULL;
    put_frame(in, 0, CD_WS_OP_TEXT, "123456", 6);
    ck_assert_int_eq(feed(&d, in, &g, &why), 0);
    put_frame(in, 1, CD_WS_OP_CONT, "78901", 5); /* 11 in all */
    ck_assert_int_eq(feed(&d, in, &g, &why), CD_WS_CLOSE_TOO_BIG);
    ck_assert_int_eq(g.n, 0);
    cd_ws_dec_free(&d);
    evbuffer_free(in);

    /* a new text message while one is fragmented */
    cd_ws_dec d2 = {.max_message = 100, .require_mask = 1};
    in = evbuffer_new();
    put_frame(in, 0, CD_WS_OP_TEXT, "a", 1);
    put_frame(in, 1, CD_WS_OP_TEXT, "b", 1);
    ck_assert_int_eq(feed(&d2, in, &g, &why), CD_WS_CLOSE_PROTOCOL);
    ck_assert_ptr_nonnull(strstr(why, "inside"));
    cd_ws_dec_free(&d2);
    evbuffer_free(in);
}
END_TEST

/* ---- a real connection ---- */

/* The server: every request is upgraded; text "close" → close 1000 "bye",
 * "flood" → sends until the output limit refuses, then closes 1008; other
 * messages are echoed. */
static int srv_want_drain;

static void srv_message(cd_ws *ws, int op, const uint8_t *data, size_t len, void *arg)
{
    (void)arg;
    if (op == CD_WS_OP_TEXT && len == 5 && !memcmp(data, "close", 5)) {
        cd_ws_close(ws, CD_WS_CLOSE_NORMAL, "bye");
        return;
    }
    if (op == CD_WS_OP_TEXT && len == 5 && !memcmp(data, "flood", 5)) {
        static char chunk[1000];
        memset(chunk, 'f', sizeof(chunk));
        int n = 0;
        while (cd_ws_send(ws, CD_WS_OP_TEXT, chunk, sizeof(chunk)) == 0)
            n++;
        ck_assert_int_eq(errno, ENOBUFS);
        ck_assert_uint_le(cd_ws_queued(ws), 64 * 1024);
        cd_ws_close(ws, CD_WS_CLOSE_POLICY, "output limit");
        return;
    }
    if (op == CD_WS_OP_TEXT && len == 6 && !memcmp(data, "refuse", 6)) {
        /* 20000 queued (under half the 64 KiB limit), then 50000 refused:
         * on_drain must still come when there is room again */
        static char big[50000];
        memset(big, 'r', sizeof(big));
        ck_assert_int_eq(cd_ws_send(ws, CD_WS_OP_BINARY, big, 20000), 0);
        ck_assert_int_eq(cd_ws_send(ws, CD_WS_OP_BINARY, big, 50000), -1);
        ck_assert_int_eq(errno, ENOBUFS);
        srv_want_drain = 1;
        return;
    }
    ck_assert_int_eq(cd_ws_send(ws, op, data, len), 0);
}

static void srv_drain(cd_ws *ws, void *arg)
{
    (void)arg;
    if (srv_want_drain) {
        srv_want_drain = 0;
        ck_assert_int_eq(cd_ws_send(ws, CD_WS_OP_TEXT, "drained", 7), 0);
    }
}

static void srv_close(cd_ws *ws, int code, const char *reason, void *arg)
{
    (void)ws;
    (void)code;
    (void)reason;
    (void)arg;
}

static void srv_request(struct evhttp_request *req, void *arg)
{
    (void)arg;
    cd_ws_limits lim = {
        .max_message = 4096, .max_output = 64 * 1024, .ping_s = 30, .write_timeout_s = 5};
    cd_ws_cbs cbs = {.on_message = srv_message, .on_drain = srv_drain, .on_close = srv_close};
    cd_ws *ws = cd_ws_upgrade(req, &lim, &cbs, NULL);
    (void)ws;
}

static pid_t srv_pid;
static int srv_port;

static void srv_start(void)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    srv_pid = fork();
    ck_assert_int_ge(srv_pid, 0);
    if (srv_pid == 0) {
        close(p[0]);
        struct event_base *base = event_base_new();
        struct evhttp *http = evhttp_new(base);
        struct evhttp_bound_socket *b = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
        struct sockaddr_in sa;
        socklen_t sl = sizeof(sa);
        getsockname(evhttp_bound_socket_get_fd(b), (struct sockaddr *)&sa, &sl);
        int port = ntohs(sa.sin_port);
        if (write(p[1], &port, sizeof(port)) != sizeof(port))
            _exit(1);
        evhttp_set_gencb(http, srv_request, NULL);
        event_base_dispatch(base);
        _exit(0);
    }
    close(p[1]);
    ck_assert_int_eq(read(p[0], &srv_port, sizeof(srv_port)), sizeof(srv_port));
    close(p[0]);
}

static void srv_stop(void)
{
    kill(srv_pid, SIGKILL);
    waitpid(srv_pid, NULL, 0);
}

static int cli_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)srv_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static void cli_write(int fd, const void *p, size_t n)
{
    ck_assert_int_eq(write(fd, p, n), (ssize_t)n);
}

/* Reads the reply head (to the blank line) into buf. */
static void cli_head(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = read(fd, buf + n, 1);
        ck_assert_int_eq(r, 1);
        n++;
        buf[n] = 0;
        if (n >= 4 && !memcmp(buf + n - 4, "\r\n\r\n", 4))
            return;
    }
    ck_abort_msg("reply head too long");
}

static void cli_read_full(int fd, void *p, size_t n)
{
    size_t got_n = 0;
    while (got_n < n) {
        ssize_t r = read(fd, (char *)p + got_n, n - got_n);
        ck_assert_int_gt(r, 0);
        got_n += (size_t)r;
    }
}

/* Reads one server frame (unmasked). */
static int cli_frame(int fd, uint8_t *payload, size_t cap, size_t *len)
{
    uint8_t h[2];
    cli_read_full(fd, h, 2);
    ck_assert_int_eq(h[1] & 0x80, 0); /* servers never mask */
    uint64_t l = h[1] & 0x7f;
    if (l == 126) {
        uint8_t e[2];
        cli_read_full(fd, e, 2);
        l = ((uint64_t)e[0] << 8) | e[1];
    } else if (l == 127) {
        uint8_t e[8];
        cli_read_full(fd, e, 8);
        l = 0;
        for (int i = 0; i < 8; i++)
            l = (l << 8) | e[i];
    }
    ck_assert_uint_le(l, cap);
    cli_read_full(fd, payload, (size_t)l);
    *len = (size_t)l;
    return h[0] & 0x0f;
}

static void cli_send(int fd, int fin, int op, const void *p, size_t len)
{
    struct evbuffer *b = evbuffer_new();
    put_frame(b, fin, op, p, len);
    size_t n = evbuffer_get_length(b);
    cli_write(fd, evbuffer_pullup(b, -1), n);
    evbuffer_free(b);
}

static const char *HS = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                        "Connection: keep-alive, Upgrade\r\n"
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n";

static int cli_open(void)
{
    int fd = cli_connect();
    cli_write(fd, HS, strlen(HS));
    char head[1024];
    cli_head(fd, head, sizeof(head));
    ck_assert_msg(!strncmp(head, "HTTP/1.1 101 ", 13), "%s", head);
    ck_assert_ptr_nonnull(strstr(head, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    return fd;
}

/* The server closes: its close frame with the code, then EOF. */
static void expect_close(int fd, int code)
{
    uint8_t p[256];
    size_t len;
    int op = cli_frame(fd, p, sizeof(p), &len);
    ck_assert_int_eq(op, CD_WS_OP_CLOSE);
    ck_assert_uint_ge(len, 2);
    ck_assert_int_eq((p[0] << 8) | p[1], code);
}

static void expect_eof(int fd)
{
    char c;
    ck_assert_int_eq(read(fd, &c, 1), 0);
}

START_TEST(conn_echo_ping_close)
{
    srv_start();
    int fd = cli_open();
    uint8_t p[8192];
    size_t len;
    cli_send(fd, 1, CD_WS_OP_TEXT, "hello", 5);
    ck_assert_int_eq(cli_frame(fd, p, sizeof(p), &len), CD_WS_OP_TEXT);
    ck_assert_uint_eq(len, 5);
    ck_assert_mem_eq(p, "hello", 5);
    cli_send(fd, 1, CD_WS_OP_PING, "pp", 2);
    ck_assert_int_eq(cli_frame(fd, p, sizeof(p), &len), CD_WS_OP_PONG);
    ck_assert_mem_eq(p, "pp", 2);
    /* fragmented binary of 3000 bytes */
    char big[3000];
    memset(big, 'b', sizeof(big));
    cli_send(fd, 0, CD_WS_OP_BINARY, big, 1000);
    cli_send(fd, 1, CD_WS_OP_CONT, big + 1000, 2000);
    ck_assert_int_eq(cli_frame(fd, p, sizeof(p), &len), CD_WS_OP_BINARY);
    ck_assert_uint_eq(len, 3000);
    /* the client closes: the server echoes its code, then closes TCP */
    cli_send(fd, 1, CD_WS_OP_CLOSE,
             "\x03\xe9"
             "gone",
             6);
    expect_close(fd, 1001);
    expect_eof(fd);
    close(fd);
    srv_stop();
}
END_TEST

START_TEST(conn_drain_after_refusal)
{
    srv_start();
    int fd = cli_open();
    static uint8_t p[60000];
    size_t len;
    cli_send(fd, 1, CD_WS_OP_TEXT, "refuse", 6);
    ck_assert_int_eq(cli_frame(fd, p, sizeof(p), &len), CD_WS_OP_BINARY);
    ck_assert_uint_eq(len, 20000);
    ck_assert_int_eq(cli_frame(fd, p, sizeof(p), &len), CD_WS_OP_TEXT);
    ck_assert_uint_eq(len, 7);
    ck_assert_mem_eq(p, "drained", 7);
    close(fd);
    srv_stop();
}
END_TEST

START_TEST(conn_pipelined_and_server_close)
{
    srv_start();
    /* handshake and a frame in one write: the frame is already in evhttp's
     * buffer when the connection is taken over */
    int fd = cli_connect();
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, HS, strlen(HS));
    put_frame(b, 1, CD_WS_OP_TEXT, "early", 5);
    cli_write(fd, evbuffer_pullup(b, -1), evbuffer_get_length(b));
    evbuffer_free(b);
    char head[1024];
    cli_head(fd, head, sizeof(head));
    ck_assert(!strncmp(head, "HTTP/1.1 101 ", 13));
    uint8_t p[256];
    size_t len;
    ck_assert_int_eq(cli_frame(fd, p, sizeof(p), &len), CD_WS_OP_TEXT);
    ck_assert_mem_eq(p, "early", 5);
    /* the server closes: 1000 "bye"; we answer; it closes TCP */
    cli_send(fd, 1, CD_WS_OP_TEXT, "close", 5);
    ck_assert_int_eq(cli_frame(fd, p, sizeof(p), &len), CD_WS_OP_CLOSE);
    ck_assert_uint_eq(len, 5);
    ck_assert_mem_eq(p,
                     "\x03\xe8"
                     "bye",
                     5);
    cli_send(fd, 1, CD_WS_OP_CLOSE, "\x03\xe8", 2);
    expect_eof(fd);
    close(fd);
    srv_stop();
}
END_TEST

START_TEST(conn_violations_close)
{
    srv_start();
    /* unmasked frame → 1002 and EOF */
    int fd = cli_open();
    cli_write(fd, "\x81\x02hi", 4);
    expect_close(fd, CD_WS_CLOSE_PROTOCOL);
    expect_eof(fd);
    close(fd);
    /* oversize (max_message 4096) → 1009 on the header alone */
    fd = cli_open();
    cli_write(fd, "\x82\xfe\x20\x00\0\0\0\0", 8);
    expect_close(fd, CD_WS_CLOSE_TOO_BIG);
    expect_eof(fd);
    close(fd);
    /* bad opcode → 1002 */
    fd = cli_open();
    cli_write(fd, "\x85\x80\0\0\0\0", 6);
    expect_close(fd, CD_WS_CLOSE_PROTOCOL);
    expect_eof(fd);
    close(fd);
    /* the output limit: the server gets ENOBUFS and closes 1008; the queued
     * messages come first */
    fd = cli_open();
    cli_send(fd, 1, CD_WS_OP_TEXT, "flood", 5);
    uint8_t p[2048];
    size_t len;
    int op, n = 0;
    while ((op = cli_frame(fd, p, sizeof(p), &len)) == CD_WS_OP_TEXT)
        n++;
    ck_assert_int_eq(op, CD_WS_OP_CLOSE);
    ck_assert_int_eq((p[0] << 8) | p[1], CD_WS_CLOSE_POLICY);
    ck_assert_int_gt(n, 10);
    ck_assert_int_le(n, 66); /* 64 KiB of 1004-byte frames */
    close(fd);
    srv_stop();
}
END_TEST

/* Handshakes that are refused: 400 / 426, and the connection stays HTTP. */
static void refused(const char *req, const char *status)
{
    int fd = cli_connect();
    cli_write(fd, req, strlen(req));
    char head[2048];
    cli_head(fd, head, sizeof(head));
    ck_assert_msg(!strncmp(head, status, strlen(status)), "%s", head);
    close(fd);
}

START_TEST(handshake_refused)
{
    srv_start();
    refused("GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400 ");
    refused("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n",
            "HTTP/1.1 400 ");
    refused("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
            "HTTP/1.1 400 ");
    refused("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
            "HTTP/1.1 426 ");
    refused("POST /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Content-Length: 0\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            "HTTP/1.1 400 ");
    srv_stop();
}
END_TEST

static Suite *suite_ws(void)
{
    Suite *s = suite_create("ws");
    TCase *tc = tcase_create("frames");
    tcase_add_test(tc, accept_key_rfc_example);
    tcase_add_test(tc, frame_header_lengths);
    tcase_add_test(tc, utf8_check);
    tcase_add_test(tc, dec_rfc_hello);
    tcase_add_test(tc, dec_fragments_and_control);
    tcase_add_test(tc, dec_stop);
    tcase_add_test(tc, dec_violations);
    tcase_add_test(tc, dec_fragments_over_limit);
    suite_add_tcase(s, tc);
    TCase *tn = tcase_create("conn");
    tcase_add_test(tn, conn_echo_ping_close);
    tcase_add_test(tn, conn_pipelined_and_server_close);
    tcase_add_test(tn, conn_drain_after_refusal);
    tcase_add_test(tn, conn_violations_close);
    tcase_add_test(tn, handshake_refused);
    suite_add_tcase(s, tn);
    return s;
}

CD_TEST_MAIN(suite_ws)
