/*
 * cd_http_cdb_notify.c - ConduitDB's notification registrations (issue 16):
 * POST /api/v1/transaction/filter and .../filter:delete (tip-filter keys
 * per account, with their expiry), POST /api/v1/output-spend/notifications
 * and ...:unregister (outpoints whose spends /ws announces).
 *
 * Why it exists: ConduitDB's users (the ElectrumSV reference server)
 * register through these routes; the paths, query parameters, bodies (JSON
 * and the 36/32-byte binary forms), reasons and status codes are
 * ConduitDB's (docs/CONDUITDB_API.md), its bugs are not (bugs 19, 22, 23 of
 * that document's table). Registrations are rows of sql/011_cdb_notify.sql
 * holding event-log watches, so they survive restarts and reorgs; the
 * notices go out on /ws (cd_http_cdb_ws.c).
 */
#include "cd_http_cdb.h"

#include "cd_cdbq_notify.h"
#include "cd_log.h"
#include "cd_util.h"

#include <sys/queue.h> /* TAILQ_INIT for evkeyvalq */

#include <errno.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ConduitDB's bounds of a registration's duration (S4: 5 minutes .. 7 days). */
#define CDB_MIN_DURATION 300
#define CDB_MAX_DURATION 604800

/* The body as a NUL-terminated copy; *len its length. */
static char *body_of(struct evhttp_request *req, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    *len = evbuffer_get_length(in);
    char *p = cd_xmalloc(*len + 1);
    evbuffer_copyout(in, p, *len);
    p[*len] = '\0';
    return p;
}

/* A required integer query parameter (ConduitDB: "`<name>` is not a
 * number"). Returns 0 with *v, or -1 (400 sent). */
static int query_int(struct evhttp_request *req, const char *name, int64_t lo, int64_t hi,
                     int64_t *v)
{
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *qs = u ? evhttp_uri_get_query(u) : NULL;
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    const char *s = NULL;
    if (qs && evhttp_parse_query_str(qs, &q) == 0)
        s = evhttp_find_header(&q, name);
    int ok = 0;
    if (s && *s) {
        char *end;
        errno = 0;
        long long x = strtoll(s, &end, 10);
        ok = *end == '\0' && errno == 0 && x >= lo && x <= hi;
        *v = x;
    }
    evhttp_clear_headers(&q);
    if (!ok) {
        cd_http_cdb_error(req, 400, "`%s` is not a number", name);
        return -1;
    }
    return 0;
}

/* The request's media type (lower case, no parameters); "" when absent. */
static void content_type(struct evhttp_request *req, char *mt, size_t cap)
{
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    mt[0] = '\0';
    if (ct)
        cd_http_cdb_media_type(ct, mt, cap);
}

/* 0 if the tip-filter routes may answer JSON (ConduitDB answers nothing
 * else: 400 "only json response body supported"), else -1 (400 sent). */
static int json_answer_ok(struct evhttp_request *req)
{
    const char *acc = evhttp_find_header(evhttp_request_get_input_headers(req), "Accept");
    if (acc && cd_http_cdb_wants_binary(req)) {
        cd_http_cdb_error(req, 400, "only json response body supported");
        return -1;
    }
    return 0;
}

/* The body form of a tip-filter route: 1 binary, 0 JSON, -1 (400 sent).
 * ConduitDB takes application/octet-stream, application/json and (as
 * JSON) any type; a missing type is taken as binary (open question 3). */
static int body_form(struct evhttp_request *req)
{
    char mt[96];
    content_type(req, mt, sizeof(mt));
    if (!strcmp(mt, "application/octet-stream") || mt[0] == '\0')
        return 1;
    if (!strcmp(mt, "application/json") || !strcmp(mt, "*/*"))
        return 0;
    cd_http_cdb_error(req, 400, "only binary or json request body supported");
    return -1;
}

/* A refused or failed change: 400 with ConduitDB's reason, H_DB_LOST for a
 * lost session, else 500. */
static int change_failed(http_srv *s, struct evhttp_request *req, int rc, const char *err)
{
    if (rc == CD_LOOKUP_EINPUT) {
        cd_http_cdb_error(req, 400, "%s", err);
        return H_DONE;
    }
    if (rc == CD_LOOKUP_EDB && cd_http_cdb_pg_lost(s))
        return H_DB_LOST;
    cd_http_cdb_error(req, 500, "%s", err);
    return H_DONE;
}

/* ---- POST /api/v1/transaction/filter ---- */

/* Parses [["<key hex>", <seconds>], ...] or 36-byte records (key, u32 BE
 * seconds). Returns the entry count, or -1 (400 sent). */
static long parse_filter(struct evhttp_request *req, int binary, uint8_t **keys, uint32_t **dur)
{
    size_t len;
    char *body = body_of(req, &len);
    *keys = NULL;
    *dur = NULL;
    if (len == 0) {
        free(body);
        cd_http_cdb_error(req, 400, "no body");
        return -1;
    }
    json_t *doc = NULL;
    if (!binary) {
        json_error_t je;
        doc = json_loadb(body, len, 0, &je);
        /* the reference server forwards its binary form under its client's
         * JSON Content-Type (open question 2): a body that is not JSON but
         * is whole 36-byte records is taken as binary */
        if (!doc && len % 36 == 0 && body[0] != '[') {
            cd_log_info("http: tip-filter registration: %zu bytes labelled JSON taken as binary",
                        len);
            binary = 1;
        } else if (!doc) {
            free(body);
            cd_http_cdb_error(req, 400, "malformed JSON: %s (line %d, column %d)", je.text, je.line,
                              je.column);
            return -1;
        }
    }
    size_t n;
    if (binary) {
        if (len % 36 != 0) {
            free(body);
            cd_http_cdb_error(req, 400, "binary request body malformed");
            return -1;
        }
        n = len / 36;
    } else if (!json_is_array(doc)) {
        json_decref(doc);
        free(body);
        cd_http_cdb_error(req, 400, "payload is not a list");
        return -1;
    } else {
        n = json_array_size(doc);
    }
    if (n > HTTP_CDB_MAX_KEYS) {
        json_decref(doc);
        free(body);
        cd_http_cdb_error(req, 400, "too many pushdata hashes: %zu (at most %d per request)", n,
                          HTTP_CDB_MAX_KEYS);
        return -1;
    }
    uint8_t *k = cd_xmalloc(n * 32 + 1);
    uint32_t *d = cd_xmalloc(n * 4 + 4);
    for (size_t i = 0; i < n; i++) {
        if (binary) {
            const uint8_t *p = (const uint8_t *)body + i * 36;
            memcpy(k + i * 32, p, 32); /* natural order, as in JSON */
            d[i] = cd_be32(p + 32);
        } else {
            json_t *e = json_array_get(doc, i);
            const char *h = json_string_value(json_array_get(e, 0));
            json_t *sec = json_array_get(e, 1);
            if (!json_is_array(e) || json_array_size(e) != 2 || !h || strlen(h) != 64 ||
                cd_hex_decode(k + i * 32, 32, h) != 0 || !json_is_integer(sec)) {
                json_decref(doc);
                free(body);
                free(k);
                free(d);
                cd_http_cdb_error(req, 400, "one or more payload entries are incorrect");
                return -1;
            }
            json_int_t v = json_integer_value(sec);
            d[i] = v < 0 ? 0 : v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
        }
        if (d[i] < CDB_MIN_DURATION || d[i] > CDB_MAX_DURATION) {
            uint32_t bad = d[i];
            json_decref(doc);
            free(body);
            free(k);
            free(d);
            if (bad < CDB_MIN_DURATION)
                cd_http_cdb_error(req, 400,
                                  "An entry has a duration of %" PRIu32
                                  " which is lower than the minimum value %d",
                                  bad, CDB_MIN_DURATION);
            else
                cd_http_cdb_error(req, 400,
                                  "An entry has a duration of %" PRIu32
                                  " which is higher than the maximum value %d",
                                  bad, CDB_MAX_DURATION);
            return -1;
        }
    }
    json_decref(doc);
    free(body);
    *keys = k;
    *dur = d;
    return (long)n;
}

int cd_http_cdb_filter_add(http_srv *s, struct evhttp_request *req)
{
    int64_t account, created;
    /* date_created up to 9999-12-31 (its ISO form has four-digit years) */
    if (query_int(req, "account_id", INT64_MIN, INT64_MAX, &account) != 0 ||
        query_int(req, "date_created", 0, INT64_C(253402300799), &created) != 0 ||
        json_answer_ok(req) != 0)
        return H_DONE;
    int binary = body_form(req);
    if (binary < 0)
        return H_DONE;
    uint8_t *keys;
    uint32_t *dur;
    long n = parse_filter(req, binary, &keys, &dur);
    if (n < 0)
        return H_DONE;
    if (n == 0) {
        free(keys);
        free(dur);
        cd_http_cdb_error(req, 400, "no pushdata hashes provided");
        return H_DONE;
    }
    char err[512];
    int rc = cd_cdbq_filter_add(s->pg, account, created, keys, dur, (size_t)n, err, sizeof(err));
    free(keys);
    free(dur);
    if (rc != CD_LOOKUP_OK)
        return change_failed(s, req, rc, err);
    /* ConduitDB: datetime.utcfromtimestamp(date_created).isoformat() */
    time_t t = (time_t)created;
    struct tm tm;
    char iso[40];
    gmtime_r(&t, &tm);
    strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%S", &tm);
    json_t *o = json_pack("{s:s}", "dateCreated", iso);
    char *text = o ? json_dumps(o, 0) : NULL;
    json_decref(o);
    if (!text) {
        cd_http_cdb_error(req, 500, "out of memory");
        return H_DONE;
    }
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, text, strlen(text));
    free(text);
    cd_http_cdb_reply(req, 200, "application/json; charset=utf-8", b);
    evbuffer_free(b);
    return H_DONE;
}

/* ---- POST /api/v1/transaction/filter:delete ---- */

int cd_http_cdb_filter_delete(http_srv *s, struct evhttp_request *req)
{
    int64_t account;
    if (query_int(req, "account_id", INT64_MIN, INT64_MAX, &account) != 0)
        return H_DONE;
    int binary = body_form(req);
    if (binary < 0)
        return H_DONE;
    size_t len, n;
    char *body = body_of(req, &len);
    uint8_t *keys = NULL;
    if (binary) {
        if (len % 32 != 0) {
            free(body);
            cd_http_cdb_error(req, 400, "binary request body malformed");
            return H_DONE;
        }
        n = len / 32;
        if (n <= HTTP_CDB_MAX_KEYS) {
            /* entry i at offset 32 i (ConduitDB reads offset i: bug 19) */
            keys = cd_xmalloc(len + 1);
            memcpy(keys, body, len);
        }
    } else {
        json_error_t je;
        json_t *doc = len ? json_loadb(body, len, 0, &je) : NULL;
        if (len && !doc) {
            free(body);
            cd_http_cdb_error(req, 400, "malformed JSON: %s (line %d, column %d)", je.text, je.line,
                              je.column);
            return H_DONE;
        }
        if (doc && !json_is_array(doc)) {
            json_decref(doc);
            free(body);
            cd_http_cdb_error(req, 400, "payload is not a list");
            return H_DONE;
        }
        n = doc ? json_array_size(doc) : 0;
        if (n <= HTTP_CDB_MAX_KEYS) {
            keys = cd_xmalloc(n * 32 + 1);
            for (size_t i = 0; i < n; i++) {
                const char *h = json_string_value(json_array_get(doc, i));
                if (!h || strlen(h) != 64 || cd_hex_decode(keys + i * 32, 32, h) != 0) {
                    json_decref(doc);
                    free(body);
                    free(keys);
                    cd_http_cdb_error(req, 400, "one or more payload entries are incorrect");
                    return H_DONE;
                }
            }
        }
        json_decref(doc);
    }
    free(body);
    if (n > HTTP_CDB_MAX_KEYS) {
        cd_http_cdb_error(req, 400, "too many pushdata hashes: %zu (at most %d per request)", n,
                          HTTP_CDB_MAX_KEYS);
        return H_DONE;
    }
    if (n == 0) {
        free(keys);
        cd_http_cdb_error(req, 400, "no pushdata hashes provided");
        return H_DONE;
    }
    char err[512];
    int rc = cd_cdbq_filter_delete(s->pg, account, keys, n, err, sizeof(err));
    free(keys);
    if (rc != CD_LOOKUP_OK)
        return change_failed(s, req, rc, err);
    struct evbuffer *b = evbuffer_new();
    cd_http_cdb_reply(req, 200, "text/plain; charset=utf-8", b);
    evbuffer_free(b);
    return H_DONE;
}

/* ---- POST /api/v1/output-spend/notifications[:unregister] ---- */

/* 0 if every index fits watched_outpoints (integer), else -1 (400 sent):
 * no transaction has 2^31 outputs, so such an outpoint can never be spent. */
static int indexes_ok(struct evhttp_request *req, const uint32_t *idx, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (idx[i] > INT32_MAX) {
            cd_http_cdb_error(req, 400, "output index %" PRIu32 " is out of range (at most %d)",
                              idx[i], INT32_MAX);
            return -1;
        }
    return 0;
}

int cd_http_cdb_spend_register(http_srv *s, struct evhttp_request *req)
{
    uint8_t *txids = NULL;
    uint32_t *idx = NULL;
    long n = cd_http_cdb_parse_outpoints(req, &txids, &idx);
    if (n < 0)
        return H_DONE;
    char err[512];
    int rc = indexes_ok(req, idx, (size_t)n) != 0
                 ? -1
                 : cd_cdbq_spend_watch(s->pg, 1, txids, idx, (size_t)n, err, sizeof(err));
    if (rc != CD_LOOKUP_OK) {
        free(txids);
        free(idx);
        return rc == -1 ? H_DONE : change_failed(s, req, rc, err);
    }
    /* the answer: the spends the outpoints have already (ConduitDB's), so
     * a spend committed before the registration is not missed */
    return cd_http_cdb_answer_spends(s, req, txids, idx, (size_t)n);
}

int cd_http_cdb_spend_unregister(http_srv *s, struct evhttp_request *req)
{
    uint8_t *txids = NULL;
    uint32_t *idx = NULL;
    long n = cd_http_cdb_parse_outpoints(req, &txids, &idx);
    if (n < 0)
        return H_DONE;
    static const uint8_t zero[32];
    char err[512];
    int rc;
    if (n == 1 && !memcmp(txids, zero, 32) && idx[0] == 0) /* ZEROED_OUTPOINT: all */
        rc = cd_cdbq_spend_clear(s->pg, err, sizeof(err));
    else if (indexes_ok(req, idx, (size_t)n) != 0)
        rc = -1;
    else
        rc = cd_cdbq_spend_watch(s->pg, 0, txids, idx, (size_t)n, err, sizeof(err));
    free(txids);
    free(idx);
    if (rc == -1)
        return H_DONE;
    if (rc != CD_LOOKUP_OK)
        return change_failed(s, req, rc, err);
    struct evbuffer *b = evbuffer_new();
    cd_http_cdb_reply(req, 200, "text/plain; charset=utf-8", b);
    evbuffer_free(b);
    return H_DONE;
}
