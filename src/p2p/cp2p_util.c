/*
 * cp2p_util.c - the small things of libconduit-p2p: names of error codes,
 * reasons, states and broadcast statuses; networks behind the opaque
 * cp2p_net; the log sink (the application's callback, or stderr); clocks,
 * randomness, allocation; text helpers for applications (escaping, hex).
 *
 * The library must never write into the application's own log format: every
 * line goes through cp2p_logf(), i.e. opt.log_fn, or to stderr prefixed
 * "conduit-p2p:" when the application gave none.
 */
#include "cp2p_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "btc_net.h"
#include "cd_escape.h"
#include "cd_util.h"

#define STR2(x) #x
#define STR(x)  STR2(x)

const char *cp2p_version_string(void)
{
    return STR(CP2P_VERSION_MAJOR) "." STR(CP2P_VERSION_MINOR) "." STR(CP2P_VERSION_PATCH);
}

const char *cp2p_strerror(int err)
{
    switch (err) {
    case CP2P_OK:
        return "ok";
    case CP2P_EINVAL:
        return "invalid argument";
    case CP2P_ENOTREADY:
        return "peer not ready";
    case CP2P_ETOOBIG:
        return "message too big for peer";
    case CP2P_ENOMEM:
        return "out of memory";
    case CP2P_ERESOLVE:
        return "cannot resolve host";
    case CP2P_ESYS:
        return "system error";
    case CP2P_EMALFORMED:
        return "malformed input";
    case CP2P_ENOPEER:
        return "no ready peer";
    case CP2P_EBUDGET:
        return "peer over its send budget";
    case CP2P_EBADPOW:
        return "proof of work invalid";
    case CP2P_EBADBITS:
        return "difficulty bits not as the rules require";
    case CP2P_ENOTLINKED:
        return "header does not link to the previous one";
    case CP2P_EBADTIME:
        return "header time out of range";
    case CP2P_EPROOF:
        return "merkle proof does not verify";
    case CP2P_EMUTATED:
        return "merkle tree mutated (duplicate siblings)";
    case CP2P_ERANGE:
        return "out of range";
    case CP2P_EUNSUPPORTED:
        return "unsupported encoding";
    default:
        return "unknown error";
    }
}

const char *cp2p_reason_str(cp2p_reason r)
{
    static const char *const names[] = {
        [CP2P_R_NONE] = "none",
        [CP2P_R_CLOSED_LOCAL] = "closed-local",
        [CP2P_R_CONNECT_FAILED] = "connect-failed",
        [CP2P_R_EOF] = "eof",
        [CP2P_R_TRUNCATED] = "truncated",
        [CP2P_R_IO] = "io-error",
        [CP2P_R_BAD_MAGIC] = "bad-magic",
        [CP2P_R_BAD_COMMAND] = "bad-command",
        [CP2P_R_OVERSIZE] = "oversize",
        [CP2P_R_BAD_CHECKSUM] = "bad-checksum",
        [CP2P_R_MALFORMED] = "malformed",
        [CP2P_R_PROTOCOL] = "protocol",
        [CP2P_R_HANDSHAKE_TIMEOUT] = "handshake-timeout",
        [CP2P_R_PING_TIMEOUT] = "ping-timeout",
        [CP2P_R_STALLED] = "stalled",
        [CP2P_R_NOMEM] = "no-memory",
        [CP2P_R_SINK] = "sink",
        [CP2P_R_SELF] = "self-connection",
        [CP2P_R_SEND_BUDGET] = "send-budget",
        [CP2P_R_RATE] = "rate",
        [CP2P_R_MSG_TIMEOUT] = "message-timeout",
        [CP2P_R_SLOW_BLOCK] = "slow-block",
        [CP2P_R_MISBEHAVED] = "misbehaved",
    };
    if ((unsigned)r < sizeof(names) / sizeof(names[0]) && names[r])
        return names[r];
    return "unknown";
}

int cp2p_reason_is_misbehaviour(cp2p_reason r)
{
    switch (r) {
    case CP2P_R_BAD_MAGIC:
    case CP2P_R_BAD_COMMAND:
    case CP2P_R_OVERSIZE:
    case CP2P_R_BAD_CHECKSUM:
    case CP2P_R_MALFORMED:
    case CP2P_R_PROTOCOL:
    case CP2P_R_SEND_BUDGET:
    case CP2P_R_RATE:
    case CP2P_R_MSG_TIMEOUT:
    case CP2P_R_SLOW_BLOCK:
    case CP2P_R_MISBEHAVED:
        return 1;
    default:
        return 0;
    }
}

const char *cp2p_peer_state_str(cp2p_peer_state s)
{
    switch (s) {
    case CP2P_PEER_IDLE:
        return "idle";
    case CP2P_PEER_CONNECTING:
        return "connecting";
    case CP2P_PEER_VERSION_SENT:
        return "version-sent";
    case CP2P_PEER_READY:
        return "ready";
    case CP2P_PEER_CLOSING:
        return "closing";
    case CP2P_PEER_BACKOFF:
        return "backoff";
    case CP2P_PEER_DEAD:
        return "dead";
    case CP2P_PEER_BANNED:
        return "banned";
    }
    return "unknown";
}

const char *cp2p_bcast_status_str(cp2p_bcast_status s)
{
    switch (s) {
    case CP2P_BCAST_SENT:
        return "SENT";
    case CP2P_BCAST_SEEN_ON_NETWORK:
        return "SEEN_ON_NETWORK";
    case CP2P_BCAST_REJECTED:
        return "REJECTED";
    case CP2P_BCAST_MISSING_INPUTS:
        return "MISSING_INPUTS";
    case CP2P_BCAST_TIMEOUT:
        return "TIMEOUT";
    case CP2P_BCAST_NOT_SENT:
        return "NOT_SENT";
    }
    return "UNKNOWN";
}

/* ---- networks ---- */

const cp2p_net *cp2p_net_by_name(const char *name)
{
    return name ? (const cp2p_net *)(const void *)btc_net_by_name(name) : NULL;
}

const char *cp2p_net_name(const cp2p_net *net)
{
    return cp2p_btcnet(net)->name;
}

uint16_t cp2p_net_default_port(const cp2p_net *net)
{
    return cp2p_btcnet(net)->default_port;
}

void cp2p_net_genesis_hash(const cp2p_net *net, uint8_t hash[32])
{
    memcpy(hash, cp2p_btcnet(net)->genesis_hash, 32);
}

void cp2p_net_genesis_header(const cp2p_net *net, uint8_t raw[80])
{
    memcpy(raw, cp2p_btcnet(net)->genesis_header, 80);
}

/* ---- text ---- */

size_t cp2p_escape(char *out, size_t cap, const void *in, size_t len)
{
    return cd_escape(out, cap, in, len);
}

void cp2p_hash_to_hex(char out[65], const uint8_t hash[32])
{
    cd_hex_encode_rev(out, hash, 32);
}

int cp2p_hash_from_hex(uint8_t hash[32], const char *hex)
{
    if (!hex || strlen(hex) != 64 || cd_hex_decode_rev(hash, 32, hex) != 0)
        return CP2P_EINVAL;
    return CP2P_OK;
}

int cp2p_hex_decode(uint8_t *out, size_t cap, size_t *len, const char *hex)
{
    size_t n = hex ? strlen(hex) : 1;
    if (!hex || n % 2 || !len)
        return CP2P_EINVAL;
    if (n / 2 > cap)
        return CP2P_ETOOBIG;
    if (cd_hex_decode(out, n / 2, hex) != 0)
        return CP2P_EINVAL;
    *len = n / 2;
    return CP2P_OK;
}

void cp2p_hex_encode(char *out, const uint8_t *in, size_t n)
{
    cd_hex_encode(out, in, n);
}

void cp2p_sha256d(uint8_t out[32], const void *data, size_t len)
{
    cd_sha256d(out, data, len);
}

/* ---- clocks, randomness, memory ---- */

uint64_t cp2p_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

int64_t cp2p_wall_s(void)
{
    return (int64_t)time(NULL);
}

uint64_t cp2p_rand64(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
        v = cp2p_now_ns() ^ ((uint64_t)getpid() << 32);
    return v ? v : 1;
}

static void oom(size_t n)
{
    fprintf(stderr, "conduit-p2p: out of memory allocating %zu bytes\n", n);
    abort();
}

void *cp2p_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *cp2p_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom(n * size);
    return p;
}

void *cp2p_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *cp2p_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = cp2p_xmalloc(n);
    memcpy(p, s, n);
    return p;
}

/* ---- logging ---- */

void cp2p_vlog(cp2p_log_fn fn, void *user, cp2p_log_level lvl, const char *fmt, va_list ap)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    char line[1024];
    vsnprintf(line, sizeof(line), fmt, ap);
    if (fn) {
        fn(user, lvl, line);
        return;
    }
    fprintf(stderr, "conduit-p2p: %s: %s\n", names[(unsigned)lvl & 3], line);
}

void cp2p_log_to(cp2p_log_fn fn, void *user, cp2p_log_level lvl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cp2p_vlog(fn, user, lvl, fmt, ap);
    va_end(ap);
}

void cp2p_logf(const cp2p_mgr *m, cp2p_log_level lvl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cp2p_vlog(m->opt.log_fn, m->opt.log_user, lvl, fmt, ap);
    va_end(ap);
}

void cp2p_mgr_set_log_level(cp2p_mgr *m, cp2p_log_level level)
{
    if (m)
        m->log_level = level;
}
