/*
 * test_api.c - the OpenAPI description served at /v1/openapi.json describes
 * exactly the routes of the route table (paths and query parameters), and
 * the check notices a document that does not.
 */
#include "cd_test.h"

#include "cd_http.h"
#include "cd_http_req.h"

#include <jansson.h>
#include <string.h>

extern const char cd_http_openapi_json[];
extern const size_t cd_http_openapi_len;

START_TEST(test_served_document_matches_the_routes)
{
    char err[512] = "";
    int rc = cd_http_openapi_check(NULL, 0, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s", err);
}
END_TEST

/* The embedded document, edited by `edit`, then checked: must fail with
 * `want` in the message. */
static void expect_mismatch(void (*edit)(json_t *paths), const char *want)
{
    json_t *doc = json_loadb(cd_http_openapi_json, cd_http_openapi_len, 0, NULL);
    ck_assert_ptr_nonnull(doc);
    edit(json_object_get(doc, "paths"));
    char *text = json_dumps(doc, 0);
    char err[512] = "";
    int rc = cd_http_openapi_check(text, strlen(text), err, sizeof(err));
    ck_assert_int_eq(rc, -1);
    ck_assert_msg(strstr(err, want) != NULL, "'%s' not in '%s'", want, err);
    free(text);
    json_decref(doc);
}

static void drop_route(json_t *paths)
{
    ck_assert_int_eq(json_object_del(paths, "/v1/tx/{txid}/proof"), 0);
}

static void add_path(json_t *paths)
{
    json_object_set_new(paths, "/v1/nosuch/{x}", json_object());
}

static void add_param(json_t *paths)
{
    json_t *params = json_object_get(
        json_object_get(json_object_get(paths, "/v1/tip"), "get"), "parameters");
    json_array_append_new(params, json_pack("{s:s, s:s}", "name", "verbose", "in", "query"));
}

static void drop_param(json_t *paths)
{
    json_t *params = json_object_get(
        json_object_get(json_object_get(paths, "/v1/pushdata/{key}/history"), "get"),
        "parameters");
    size_t i;
    json_t *p;
    json_array_foreach(params, i, p) {
        if (!strcmp(json_string_value(json_object_get(p, "name")), "after")) {
            json_array_remove(params, i);
            return;
        }
    }
    ck_abort_msg("no 'after' parameter in the document");
}

START_TEST(test_mismatches_are_found)
{
    expect_mismatch(drop_route, "no path for the route /v1/tx");
    expect_mismatch(add_path, "/v1/nosuch/{x} is not a route");
    expect_mismatch(add_param, "query parameter verbose not in the route");
    expect_mismatch(drop_param, "documents 1 query parameters, the route takes 2");
}
END_TEST

START_TEST(test_not_json)
{
    char err[256] = "";
    ck_assert_int_eq(cd_http_openapi_check("{", 1, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "no paths"));
}
END_TEST

/* ---- the one path matcher (cd_http_path_match) ---- */

static const char *const P_TX[] = {"v1", "tx", "*", NULL};
static const char *const P_PROOF[] = {"v1", "tx", "*", "proof", NULL};
static const char *const P_CDB_HDR[] = {"api", "v1", "chain", "header", "*", NULL};
static const char *const P_ROOT[] = {NULL};

static int req_match(const char *const *pat, const char *path)
{
    return cd_http_path_match(pat, path, CD_HTTP_MATCH_REQUEST, NULL);
}

START_TEST(test_path_match_exact_and_star)
{
    const char *star = "unset";
    ck_assert_int_eq(cd_http_path_match(P_TX, "/v1/tx/ab12", CD_HTTP_MATCH_REQUEST, &star), 1);
    ck_assert_str_eq(star, "ab12");
    ck_assert_int_eq(cd_http_path_match(P_PROOF, "/v1/tx/ab/proof", 0, &star), 1);
    ck_assert_int_eq(strncmp(star, "ab/", 3), 0); /* up to the next '/' */
    ck_assert_int_eq(cd_http_path_match(P_CDB_HDR, "/api/v1/chain/header/00ff", 0, &star), 1);
    ck_assert_str_eq(star, "00ff");
    ck_assert_int_eq(req_match(P_TX, "/v1/tx"), 0);          /* a segment short */
    ck_assert_int_eq(req_match(P_TX, "/v1/tx/ab/proof"), 0); /* one too many */
    ck_assert_int_eq(req_match(P_PROOF, "/v1/tx/ab/proofs"), 0);
    ck_assert_int_eq(req_match(P_PROOF, "/v1/tx/ab/proo"), 0);
    ck_assert_int_eq(req_match(P_TX, "v1/tx/ab"), 0); /* not absolute */
    ck_assert_int_eq(cd_http_path_match(P_TX, "/v1/tx", 0, &star), 0);
    ck_assert_ptr_null(star); /* no match: no segment */
    /* the empty pattern is "/" alone */
    ck_assert_int_eq(req_match(P_ROOT, "/"), 1);
    ck_assert_int_eq(req_match(P_ROOT, "//"), 0);
    ck_assert_int_eq(req_match(P_ROOT, "/x"), 0);
    ck_assert_int_eq(req_match(P_ROOT, ""), 0);
}
END_TEST

START_TEST(test_path_match_edge_cases)
{
    /* a trailing slash or an empty segment matches nothing */
    ck_assert_int_eq(req_match(P_TX, "/v1/tx/ab/"), 0);
    ck_assert_int_eq(req_match(P_TX, "/v1/tx/"), 0);
    ck_assert_int_eq(req_match(P_TX, "/v1//tx/ab"), 0);
    ck_assert_int_eq(req_match(P_PROOF, "/v1/tx//proof"), 0);
    /* %2F is not a separator (the path is not decoded): one segment */
    const char *star = NULL;
    ck_assert_int_eq(cd_http_path_match(P_TX, "/v1/tx/ab%2Fproof", 0, &star), 1);
    ck_assert_str_eq(star, "ab%2Fproof");
    ck_assert_int_eq(req_match(P_PROOF, "/v1/tx/ab%2Fproof"), 0);
    ck_assert_int_eq(req_match(P_PROOF, "/v1%2Ftx/ab/proof"), 0);
    /* a query string is the caller's to cut: left on, it is part of the segment */
    ck_assert_int_eq(req_match(P_PROOF, "/v1/tx/ab/proof?x=1"), 0);
    ck_assert_int_eq(req_match(P_TX, "/v1/tx/ab?x=1"), 1);
    /* case matters */
    ck_assert_int_eq(req_match(P_PROOF, "/v1/tx/ab/Proof"), 0);
    ck_assert_int_eq(req_match(P_PROOF, "/V1/tx/ab/proof"), 0);
}
END_TEST

/* the one path splitter, under /v1/ (the routes) and under / (the SDK's) */
START_TEST(test_split_path_prefixes)
{
    char buf[64], *seg[3];
    int n = -1;
    ck_assert_int_eq(cd_http_split_path("/v1/tx/ab", "/v1/", buf, sizeof(buf), seg, 3, &n), 0);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(seg[0], "tx");
    ck_assert_str_eq(seg[1], "ab");
    ck_assert_int_eq(cd_http_split_path("/v1/tx/ab", "/", buf, sizeof(buf), seg, 3, &n), 0);
    ck_assert_int_eq(n, 3);
    ck_assert_str_eq(seg[0], "v1");
    ck_assert_int_eq(cd_http_split_path("/v2/tx", "/v1/", buf, sizeof(buf), seg, 3, &n), -1);
    ck_assert_int_eq(cd_http_split_path("tx/ab", "/", buf, sizeof(buf), seg, 3, &n), -1);
    ck_assert_int_eq(cd_http_split_path("/a//b", "/", buf, sizeof(buf), seg, 3, &n), -1);
    ck_assert_int_eq(cd_http_split_path("/a/b/", "/", buf, sizeof(buf), seg, 3, &n), -1);
    ck_assert_int_eq(cd_http_split_path("/", "/", buf, sizeof(buf), seg, 3, &n), -1);
    ck_assert_int_eq(cd_http_split_path("/a/b/c/d", "/", buf, sizeof(buf), seg, 3, &n), -1);
    char longp[80];
    memset(longp, 'a', sizeof(longp) - 1);
    longp[0] = '/';
    longp[sizeof(longp) - 1] = '\0';
    ck_assert_int_eq(cd_http_split_path(longp, "/", buf, sizeof(buf), seg, 3, &n), -1);
}
END_TEST

START_TEST(test_path_match_openapi_templates)
{
    const int O = CD_HTTP_MATCH_OPENAPI;
    ck_assert_int_eq(cd_http_path_match(P_PROOF, "/v1/tx/{txid}/proof", O, NULL), 1);
    ck_assert_int_eq(cd_http_path_match(P_PROOF, "/v1/tx/abc/proof", O, NULL), 0);
    ck_assert_int_eq(cd_http_path_match(P_PROOF, "/v1/{tx}/{txid}/proof", O, NULL), 0);
    ck_assert_int_eq(cd_http_path_match(P_PROOF, "/v1/tx/{txid}/proof/", O, NULL), 0);
    ck_assert_int_eq(cd_http_path_match(P_TX, "/v1/tx/{}", O, NULL), 1);
    ck_assert_int_eq(cd_http_path_match(P_TX, "/v1/tx/{", O, NULL), 0);
    /* a request path may hold braces: only the OpenAPI mode reads them */
    ck_assert_int_eq(cd_http_path_match(P_TX, "/v1/tx/{txid}", CD_HTTP_MATCH_REQUEST, NULL), 1);
    /* the segment matcher agrees with the path matcher */
    char a[] = "tx", b[] = "ab", c[] = "proof", v[] = "v1";
    char *seg[] = {v, a, b, c};
    ck_assert_int_eq(cd_http_route_match(P_PROOF, seg, 4), 1);
    ck_assert_int_eq(cd_http_route_match(P_PROOF, seg, 3), 0);
    ck_assert_int_eq(cd_http_route_match(P_TX, seg, 3), 1);
}
END_TEST

static Suite *suite_api(void)
{
    Suite *s = suite_create("api");
    TCase *tc = tcase_create("openapi");
    tcase_add_test(tc, test_served_document_matches_the_routes);
    tcase_add_test(tc, test_mismatches_are_found);
    tcase_add_test(tc, test_not_json);
    suite_add_tcase(s, tc);
    TCase *tm = tcase_create("path_match");
    tcase_add_test(tm, test_path_match_exact_and_star);
    tcase_add_test(tm, test_path_match_edge_cases);
    tcase_add_test(tm, test_path_match_openapi_templates);
    tcase_add_test(tm, test_split_path_prefixes);
    suite_add_tcase(s, tm);
    return s;
}

CD_TEST_MAIN(suite_api)
