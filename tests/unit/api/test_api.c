/*
 * test_api.c - the OpenAPI description served at /v1/openapi.json describes
 * exactly the routes of the route table (paths and query parameters), and
 * the check notices a document that does not.
 */
#include "cd_test.h"

#include "cd_http.h"

#include <jansson.h>

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

static Suite *suite_api(void)
{
    Suite *s = suite_create("api");
    TCase *tc = tcase_create("openapi");
    tcase_add_test(tc, test_served_document_matches_the_routes);
    tcase_add_test(tc, test_mismatches_are_found);
    tcase_add_test(tc, test_not_json);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_api)
