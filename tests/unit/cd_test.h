/*
 * cd_test.h - shared scaffolding for the Check unit tests.
 *
 * Each tests/unit/<module>/test_<name>.c defines `Suite *suite_<name>(void)`
 * and ends with CD_TEST_MAIN(suite_<name>). Output is TAP on stdout
 * (CK_TAP_LOG_FILE_NAME=- set by meson), so `meson test` reports each case.
 */
#ifndef CD_TEST_H
#define CD_TEST_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Directory of ../shared/data (set by meson as CD_SHARED_DATA). */
static inline const char *cd_test_data_dir(void)
{
    const char *d = getenv("CD_SHARED_DATA");
    return d ? d : "../shared/data";
}

/* Reads a whole file under the shared data directory into a malloc'd buffer.
 * Aborts the test on failure. */
static inline unsigned char *cd_test_read_file(const char *rel, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", cd_test_data_dir(), rel);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

#define CD_TEST_MAIN(suite_fn)                                                                     \
    int main(void)                                                                                 \
    {                                                                                              \
        SRunner *sr = srunner_create(suite_fn());                                                  \
        srunner_run_all(sr, CK_ENV);                                                               \
        int failed = srunner_ntests_failed(sr);                                                    \
        srunner_free(sr);                                                                          \
        return failed == 0 ? 0 : 1;                                                                \
    }

#endif /* CD_TEST_H */
