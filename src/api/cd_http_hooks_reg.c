/*
 * cd_http_hooks_reg.c - webhook registrations in PostgreSQL (sql/012): the
 * checks of a registration, adding, deleting and reading them. Shared by
 * the HTTP routes (cd_http_hooks.c) and `conduit-cli webhook`
 * (src/cli/cli_hooks.c), so both refuse the same things in the same words.
 */
#include "cd_http_hooks.h"

#include "cd_util.h"

#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "{a,b,c}": a PostgreSQL array literal of words made only of hex digits
 * and digits (no quoting needed). Returns malloc'd text. */
static char *pg_array(json_t *arr, const char *field)
{
    size_t n = json_array_size(arr), cap = 3, i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        json_t *s = field ? json_object_get(v, field) : v;
        cap += (json_is_string(s) ? json_string_length(s) : 24) + 1;
    }
    char *out = cd_xmalloc(cap), *p = out;
    *p++ = '{';
    json_array_foreach(arr, i, v) {
        json_t *s = field ? json_object_get(v, field) : v;
        if (i)
            *p++ = ',';
        if (json_is_string(s))
            p += sprintf(p, "%s", json_string_value(s));
        else
            p += sprintf(p, "%" JSON_INTEGER_FORMAT, json_integer_value(s));
    }
    (void)n;
    *p++ = '}';
    *p = '\0';
    return out;
}

static int is_hex64(json_t *s)
{
    if (!json_is_string(s) || json_string_length(s) != 64)
        return 0;
    const char *p = json_string_value(s);
    for (int i = 0; i < 64; i++)
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f') ||
              (p[i] >= 'A' && p[i] <= 'F')))
            return 0;
    return 1;
}

int cd_hook_check(const json_t *body, char *why, size_t wl)
{
    json_t *o = (json_t *)body; /* jansson's getters take non-const pointers */
    const char *k;
    json_t *v;
    if (!json_is_object(o)) {
        snprintf(why, wl, "expected a JSON object {url, keys, outpoints, kinds}");
        return -1;
    }
    json_object_foreach(o, k, v) {
        if (strcmp(k, "url") && strcmp(k, "keys") && strcmp(k, "outpoints") && strcmp(k, "kinds")) {
            snprintf(why, wl, "unknown field '%.64s': the fields are url, keys, outpoints, kinds",
                     k);
            return -1;
        }
    }
    json_t *url = json_object_get(o, "url");
    const char *uwhy;
    if (!json_is_string(url)) {
        snprintf(why, wl, "url: expected a string (http://host[:port]/path)");
        return -1;
    }
    if (strlen(json_string_value(url)) != json_string_length(url) ||
        cd_hook_url_check(json_string_value(url), &uwhy) != 0) {
        snprintf(why, wl, "url: %s", strlen(json_string_value(url)) != json_string_length(url)
                                          ? "contains a NUL byte"
                                          : uwhy);
        return -1;
    }
    json_t *keys = json_object_get(o, "keys"), *ops = json_object_get(o, "outpoints"),
           *kinds = json_object_get(o, "kinds");
    size_t i;
    if (keys && !json_is_array(keys)) {
        snprintf(why, wl, "keys: expected an array of 64-hex-digit pushdata keys");
        return -1;
    }
    if (json_array_size(keys) > CD_HOOK_MAX_KEYS) {
        snprintf(why, wl, "keys: at most %u per registration", CD_HOOK_MAX_KEYS);
        return -1;
    }
    json_array_foreach(keys, i, v) {
        if (!is_hex64(v)) {
            snprintf(why, wl,
                     "keys[%zu]: expected 64 hex digits (a pushdata key: sha256 of the pushed "
                     "bytes, as in GET /v1/pushdata/<key>/history)",
                     i);
            return -1;
        }
    }
    if (ops && !json_is_array(ops)) {
        snprintf(why, wl, "outpoints: expected an array of {\"txid\": <hex>, \"vout\": <n>}");
        return -1;
    }
    if (json_array_size(ops) > CD_HOOK_MAX_OUTPOINTS) {
        snprintf(why, wl, "outpoints: at most %u per registration", CD_HOOK_MAX_OUTPOINTS);
        return -1;
    }
    json_array_foreach(ops, i, v) {
        json_t *t = json_object_get(v, "txid"), *n = json_object_get(v, "vout");
        if (!json_is_object(v) || json_object_size(v) != 2 || !is_hex64(t) ||
            !json_is_integer(n) || json_integer_value(n) < 0 ||
            json_integer_value(n) > INT32_MAX) {
            snprintf(why, wl,
                     "outpoints[%zu]: expected {\"txid\": <64 hex digits>, \"vout\": 0..%d}", i,
                     INT32_MAX);
            return -1;
        }
    }
    if (kinds && !json_is_array(kinds)) {
        snprintf(why, wl, "kinds: expected an array of tip, reorg, evict");
        return -1;
    }
    json_array_foreach(kinds, i, v) {
        const char *s = json_string_value(v);
        if (s && (!strcmp(s, "key") || !strcmp(s, "spend"))) {
            snprintf(why, wl, "kinds[%zu]: '%s' events come from %s: list them there", i, s,
                     !strcmp(s, "key") ? "keys" : "outpoints");
            return -1;
        }
        if (!s || (strcmp(s, "tip") && strcmp(s, "reorg") && strcmp(s, "evict"))) {
            snprintf(why, wl, "kinds[%zu]: expected one of tip, reorg, evict", i);
            return -1;
        }
    }
    if (!json_array_size(keys) && !json_array_size(ops) && !json_array_size(kinds)) {
        snprintf(why, wl, "nothing to deliver: give keys, outpoints or kinds");
        return -1;
    }
    return 0;
}

/* The message of a failed statement, one line, into why. */
static int db_error(PGresult *r, char *why, size_t wl)
{
    snprintf(why, wl, "%s", PQresultErrorMessage(r));
    why[strcspn(why, "\n")] = '\0';
    PQclear(r);
    return CD_HOOK_EDB;
}

/* Wakes the delivery process after a change committed (it reloads every
 * 5 s anyway: a failure here only delays). */
static void notify_sender(PGconn *pg)
{
    PQclear(PQexec(pg, "NOTIFY cd_webhook"));
}

int cd_hook_register(PGconn *pg, const json_t *body, int64_t *id,
                     char secret[2 * CD_HOOK_SECRET_BYTES + 1], char *why, size_t wl)
{
    json_t *o = (json_t *)body;
    if (cd_hook_check(body, why, wl) != 0)
        return CD_HOOK_EINPUT;
    char maxs[16];
    snprintf(maxs, sizeof(maxs), "%d", CD_HOOK_MAX_REGISTRATIONS);
    const char *mv[1] = {maxs};
    PGresult *c = PQexecParams(pg, "SELECT count(*) >= $1::bigint FROM webhooks", 1, NULL, mv,
                               NULL, NULL, 0);
    if (PQresultStatus(c) != PGRES_TUPLES_OK)
        return db_error(c, why, wl);
    int full = PQgetvalue(c, 0, 0)[0] == 't';
    PQclear(c);
    if (full) {
        snprintf(why, wl,
                 "there are %d webhook registrations already (the most there can be): delete "
                 "some first",
                 CD_HOOK_MAX_REGISTRATIONS);
        return CD_HOOK_EFULL;
    }
    uint8_t raw[CD_HOOK_SECRET_BYTES];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        snprintf(why, wl, "no random bytes for the secret (OpenSSL)");
        return CD_HOOK_EDB;
    }
    cd_hex_encode(secret, raw, sizeof(raw));
    OPENSSL_cleanse(raw, sizeof(raw));
    json_t *keys = json_object_get(o, "keys"), *ops = json_object_get(o, "outpoints"),
           *kinds = json_object_get(o, "kinds");
    json_t *empty = json_array();
    char *a_kinds = pg_array(kinds ? kinds : empty, NULL);
    char *a_keys = pg_array(keys ? keys : empty, NULL);
    char *a_txid = pg_array(ops ? ops : empty, "txid");
    char *a_vout = pg_array(ops ? ops : empty, "vout");
    json_decref(empty);
    const char *v[6] = {json_string_value(json_object_get(o, "url")), secret, a_kinds, a_keys,
                        a_txid, a_vout};
    PGresult *r = PQexecParams(
        pg,
        "SELECT cd_webhook_add($1, $2, $3::text[], "
        " ARRAY(SELECT decode(x, 'hex') FROM unnest($4::text[]) x), "
        " ARRAY(SELECT cd_txid(x) FROM unnest($5::text[]) WITH ORDINALITY t (x, n) ORDER BY n), "
        " $6::integer[])",
        6, NULL, v, NULL, NULL, 0);
    free(a_kinds);
    free(a_keys);
    free(a_txid);
    free(a_vout);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        OPENSSL_cleanse(secret, 2 * CD_HOOK_SECRET_BYTES + 1);
        return db_error(r, why, wl);
    }
    *id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    notify_sender(pg);
    return 0;
}

int cd_hook_delete(PGconn *pg, int64_t id, char *why, size_t wl)
{
    char ids[24];
    snprintf(ids, sizeof(ids), "%" PRId64, id);
    const char *v[1] = {ids};
    PGresult *r =
        PQexecParams(pg, "SELECT cd_webhook_delete($1::bigint)", 1, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return db_error(r, why, wl);
    int found = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (!found) {
        snprintf(why, wl, "no webhook %" PRId64, id);
        return CD_HOOK_ENOTFOUND;
    }
    notify_sender(pg);
    return 0;
}

#define TS(col)                                                                                  \
    "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* The status of every registration (id NULL) or of one. */
static const char STATUS_SQL[] =
    "SELECT h.id, h.url, array_to_json(h.kinds)::text, " TS("h.created_at") ", h.scan_id, "
    " h.delivered_id, h.delivered, h.attempts, h.failures, h.last_error, " TS("h.last_attempt")
    ", " TS("h.next_attempt") ", " TS("h.failing_since") ", h.failing, h.lost, "
    " (SELECT coalesce(json_agg(encode(k.push_hash, 'hex') ORDER BY k.push_hash), '[]')::text "
    "  FROM webhook_keys k WHERE k.hook_id = h.id), "
    " (SELECT coalesce(json_agg(json_build_object('txid', cd_txid_hex(o.prev_hash), "
    "   'vout', o.prev_idx) ORDER BY o.prev_hash, o.prev_idx), '[]')::text "
    "  FROM webhook_outpoints o WHERE o.hook_id = h.id), "
    " (SELECT max(id) FROM events) "
    "FROM webhooks h WHERE $1::bigint IS NULL OR h.id = $1::bigint ORDER BY h.id";

static json_t *jnum_or_null(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? json_null()
                                    : json_integer(strtoll(PQgetvalue(r, row, col), NULL, 10));
}

static json_t *jstr_or_null(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? json_null() : json_string(PQgetvalue(r, row, col));
}

static json_t *status_row(PGresult *r, int i)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", jnum_or_null(r, i, 0));
    json_object_set_new(o, "url", jstr_or_null(r, i, 1));
    json_object_set_new(o, "kinds", json_loads(PQgetvalue(r, i, 2), 0, NULL));
    json_object_set_new(o, "keys", json_loads(PQgetvalue(r, i, 15), 0, NULL));
    json_object_set_new(o, "outpoints", json_loads(PQgetvalue(r, i, 16), 0, NULL));
    json_object_set_new(o, "created", jstr_or_null(r, i, 3));
    json_object_set_new(o, "cursor", jnum_or_null(r, i, 4));
    json_object_set_new(o, "last_delivered_event", jnum_or_null(r, i, 5));
    json_object_set_new(o, "latest_event", jnum_or_null(r, i, 17));
    json_object_set_new(o, "delivered", jnum_or_null(r, i, 6));
    json_object_set_new(o, "failing", json_boolean(PQgetvalue(r, i, 13)[0] == 't'));
    json_object_set_new(o, "attempts", jnum_or_null(r, i, 7));
    json_object_set_new(o, "failures", jnum_or_null(r, i, 8));
    json_object_set_new(o, "last_error", jstr_or_null(r, i, 9));
    json_object_set_new(o, "last_attempt", jstr_or_null(r, i, 10));
    json_object_set_new(o, "next_attempt", jstr_or_null(r, i, 11));
    json_object_set_new(o, "failing_since", jstr_or_null(r, i, 12));
    json_object_set_new(o, "lost", jnum_or_null(r, i, 14));
    return o;
}

int cd_hook_status(PGconn *pg, int64_t id, json_t **out, char *why, size_t wl)
{
    char ids[24];
    snprintf(ids, sizeof(ids), "%" PRId64, id);
    const char *v[1] = {id ? ids : NULL};
    *out = NULL;
    PGresult *r = PQexecParams(pg, STATUS_SQL, 1, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return db_error(r, why, wl);
    int n = PQntuples(r);
    if (id && n == 0) {
        PQclear(r);
        snprintf(why, wl, "no webhook %" PRId64, id);
        return CD_HOOK_ENOTFOUND;
    }
    if (id) {
        *out = status_row(r, 0);
    } else {
        json_t *arr = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(arr, status_row(r, i));
        *out = arr;
    }
    PQclear(r);
    return 0;
}
