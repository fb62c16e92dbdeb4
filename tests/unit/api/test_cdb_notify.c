/*
 * test_cdb_notify.c - the pure parts of ConduitDB's /ws and of the body
 * cap (src/api/cd_http_cdb_ws.c, cd_http_cdb_limits.c): the 104-byte
 * output-spend record, the JSON text frames (tip-filter matches grouped by
 * account, orphaned matches and spends, one account's view), and the
 * request-head rewrite on a real bufferevent's input buffer (a head whose
 * Content-Length is over the cap, one under it, a partial head, a body
 * that is not a head, a head already marked).
 */
#include "cd_test.h"

#include "cd_http_cdb.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

static cd_cdbq_notice notice(int kind, int64_t account, uint8_t fill)
{
    cd_cdbq_notice v;
    memset(&v, 0, sizeof(v));
    v.kind = kind;
    v.account = account;
    memset(v.block, 0xbb, 32);
    v.block[0] = 0x01; /* internal order: display hex ends in 01 */
    memset(v.out_tx, fill, 32);
    memset(v.in_tx, (uint8_t)(fill + 1), 32);
    memset(v.key, 0xcc, 32);
    v.key[0] = 0x0a; /* natural order: hex starts with 0a */
    memset(v.tx, fill, 32);
    v.out_idx = 0x01020304;
    v.in_idx = 7;
    v.idx = 2;
    v.flags = 1;
    return v;
}

START_TEST(spend_record_layout)
{
    cd_cdbq_notice v = notice(CD_CDBQ_N_SPEND, 0, 0x11);
    uint8_t r[104];
    cd_http_cdb_spend_record(&v, r);
    ck_assert_int_eq(r[0], 0x11);
    ck_assert_int_eq(r[32], 1); /* u32 big-endian */
    ck_assert_int_eq(r[35], 4);
    ck_assert_int_eq(r[36], 0x12);
    ck_assert_int_eq(r[71], 7);
    ck_assert_int_eq(r[72], 0x01); /* block, internal order */
    v.mempool = 1;
    cd_http_cdb_spend_record(&v, r);
    for (int i = 72; i < 104; i++) /* NO_BLOCK_HASH */
        ck_assert_int_eq(r[i], 0);
}
END_TEST

START_TEST(match_json_grouped_by_account)
{
    cd_cdbq_notice v[3] = {notice(CD_CDBQ_N_MATCH, 1, 0x21), notice(CD_CDBQ_N_MATCH, 2, 0x22),
                           notice(CD_CDBQ_N_MATCH, 1, 0x23)};
    json_t *o = cd_cdbq_notice_json(v, 3, 0, 0);
    ck_assert_ptr_nonnull(o);
    char *t = json_dumps(o, JSON_COMPACT);
    json_t *e = json_object_get(o, "entries");
    ck_assert_int_eq(json_array_size(e), 2);
    json_t *a1 = json_array_get(e, 0);
    ck_assert_int_eq(json_integer_value(json_object_get(a1, "accountId")), 1);
    ck_assert_int_eq(json_array_size(json_object_get(a1, "matches")), 2);
    json_t *m = json_array_get(json_object_get(a1, "matches"), 0);
    ck_assert(!strncmp(json_string_value(json_object_get(m, "pushDataHashHex")), "0acc", 4));
    ck_assert_int_eq(json_integer_value(json_object_get(m, "transactionIndex")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(m, "flags")), 1);
    const char *blk = json_string_value(json_object_get(o, "blockId"));
    ck_assert_int_eq(strlen(blk), 64);
    ck_assert_str_eq(blk + 62, "01"); /* display order */
    ck_assert_ptr_null(json_object_get(o, "orphaned"));
    free(t);
    json_decref(o);
    /* one account's view; an account with nothing gets no frame */
    o = cd_cdbq_notice_json(v, 3, 1, 2);
    ck_assert_int_eq(json_array_size(json_object_get(o, "entries")), 1);
    json_decref(o);
    ck_assert_ptr_null(cd_cdbq_notice_json(v, 3, 1, 99));
    /* mempool: blockId null */
    v[0].mempool = 1;
    o = cd_cdbq_notice_json(v, 1, 0, 0);
    ck_assert(json_is_null(json_object_get(o, "blockId")));
    json_decref(o);
}
END_TEST

START_TEST(orphaned_json)
{
    cd_cdbq_notice m = notice(CD_CDBQ_N_MATCH_GONE, 1, 0x31);
    json_t *o = cd_cdbq_notice_json(&m, 1, 0, 0);
    ck_assert(json_is_true(json_object_get(o, "orphaned")));
    ck_assert_int_eq(json_array_size(json_object_get(o, "entries")), 1);
    json_decref(o);
    cd_cdbq_notice s = notice(CD_CDBQ_N_SPEND_GONE, 0, 0x32);
    o = cd_cdbq_notice_json(&s, 1, 0, 0);
    ck_assert(json_is_true(json_object_get(o, "orphaned")));
    json_t *row = json_array_get(json_object_get(o, "outputSpends"), 0);
    ck_assert_int_eq(json_array_size(row), 5);
    ck_assert_int_eq(json_integer_value(json_array_get(row, 1)), 0x01020304);
    ck_assert_int_eq(json_integer_value(json_array_get(row, 3)), 7);
    json_decref(o);
}
END_TEST

/* Runs: one message per run of one kind and one block (the mempool is a
 * block of its own), what /ws and the reference-server POST both split by. */
START_TEST(notice_runs)
{
    cd_cdbq_notice v[6] = {notice(CD_CDBQ_N_MATCH_GONE, 1, 1), notice(CD_CDBQ_N_MATCH_GONE, 2, 2),
                           notice(CD_CDBQ_N_MATCH, 1, 3),      notice(CD_CDBQ_N_MATCH, 1, 4),
                           notice(CD_CDBQ_N_MATCH, 1, 5),      notice(CD_CDBQ_N_MATCH, 1, 6)};
    v[4].block[5] = 0x99; /* another block */
    v[5].mempool = 1;
    memset(v[5].block, 0, 32);
    ck_assert_uint_eq(cd_cdbq_notice_run(v, 6, 0), 2); /* orphaned, same block */
    ck_assert_uint_eq(cd_cdbq_notice_run(v, 6, 2), 4); /* new, same block */
    ck_assert_uint_eq(cd_cdbq_notice_run(v, 6, 4), 5); /* another block */
    ck_assert_uint_eq(cd_cdbq_notice_run(v, 6, 5), 6); /* the mempool */
    ck_assert_uint_eq(cd_cdbq_notice_run(v, 3, 2), 3); /* the end of the array */
}
END_TEST

/* Feeds text into a bufferevent's input (the cap's callback runs as it
 * would on a read) and returns what evhttp would then parse. */
static char *fed(const char *text)
{
    struct event_base *base = event_base_new();
    struct bufferevent *bev = bufferevent_socket_new(base, -1, 0);
    cd_http_body_cap(bev);
    struct evbuffer *in = bufferevent_get_input(bev);
    /* a socket bufferevent's input end is frozen except while it reads */
    evbuffer_unfreeze(in, 0);
    ck_assert_int_eq(evbuffer_add(in, text, strlen(text)), 0);
    size_t n = evbuffer_get_length(in);
    char *out = malloc(n + 1);
    evbuffer_remove(in, out, n);
    out[n] = '\0';
    bufferevent_free(bev);
    event_base_free(base);
    return out;
}

START_TEST(body_cap_rewrites_heads)
{
    char *s = fed("POST /api/v1/output-spend HTTP/1.1\r\nHost: x\r\n"
                  "content-length: 10000000\r\nContent-Type: application/json\r\n\r\nxxxx");
    ck_assert_str_eq(s, "POST /api/v1/output-spend HTTP/1.1\r\nHost: x\r\n"
                        "Content-Type: application/json\r\nContent-Length: 0\r\n"
                        "X-Conduitd-Body-Too-Large: 10000000\r\n\r\nxxxx");
    free(s);
    /* at the cap, a partial head, a body, a marked head: unchanged */
    const char *same[] = {
        "POST / HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 99999999\r\n",
        "xyz POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
        "POST / HTTP/1.1\r\nX-Conduitd-Body-Too-Large: 5\r\nContent-Length: 99999999\r\n\r\n",
        "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        s = fed(same[i]);
        ck_assert_str_eq(s, same[i]);
        free(s);
    }
}
END_TEST

static Suite *suite_cdb_notify(void)
{
    Suite *s = suite_create("cdb_notify");
    TCase *tc = tcase_create("encode");
    tcase_add_test(tc, spend_record_layout);
    tcase_add_test(tc, match_json_grouped_by_account);
    tcase_add_test(tc, orphaned_json);
    tcase_add_test(tc, notice_runs);
    tcase_add_test(tc, body_cap_rewrites_heads);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_cdb_notify)
