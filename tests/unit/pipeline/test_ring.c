/*
 * test_ring.c - the shared-memory ring: header, double mapping across the
 * wrap, FIFO accounting, sharing with a forked child, stale-segment cleanup.
 */
#include "cd_test.h"

#include "cd_ring.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static void test_name(char out[CD_RING_NAME_MAX], const char *tag)
{
    snprintf(out, CD_RING_NAME_MAX, "/cd-test-ring-%s-%d", tag, (int)getpid());
}

START_TEST(test_header_and_name)
{
    char name[CD_RING_NAME_MAX];
    test_name(name, "hdr");
    cd_ring r;
    ck_assert_int_eq(cd_ring_create(&r, name, 100000), 0);
    long pg = sysconf(_SC_PAGESIZE);
    ck_assert_uint_eq(r.size % (uint64_t)pg, 0);
    ck_assert_uint_ge(r.size, 100000);
    ck_assert_uint_eq(r.hdr->magic, CD_RING_MAGIC);
    ck_assert_uint_eq(r.hdr->layout_version, CD_RING_LAYOUT_VERSION);
    ck_assert_int_eq(r.hdr->creator_pid, getpid());
    ck_assert_uint_eq(r.hdr->data_size, r.size);
    ck_assert_uint_eq(r.hdr->total_size, r.size + CD_RING_HDR_SIZE);
    ck_assert_uint_eq((uintptr_t)&r.hdr->slot[1] - (uintptr_t)&r.hdr->slot[0], 64);
    ck_assert_uint_eq((uintptr_t)&r.hdr->slot[0] % 64, 0);
    cd_ring_destroy(&r);
    /* unlinked */
    ck_assert_int_lt(shm_open(name, O_RDONLY, 0), 0);
    ck_assert_int_eq(errno, ENOENT);

    char n1[CD_RING_NAME_MAX], n2[CD_RING_NAME_MAX], n3[CD_RING_NAME_MAX];
    ck_assert_int_eq(cd_ring_name_for("/tmp", n1), 0);
    ck_assert_int_eq(cd_ring_name_for("/tmp/", n2), 0);
    ck_assert_int_eq(cd_ring_name_for("/", n3), 0);
    ck_assert_str_eq(n1, n2);
    ck_assert_str_ne(n1, n3);
    ck_assert_int_eq(strncmp(n1, "/conduitd-", 10), 0);
    ck_assert_int_eq(cd_ring_name_for("/nonexistent/dir/x", n1), -1);
}
END_TEST

START_TEST(test_wraparound_is_contiguous)
{
    char name[CD_RING_NAME_MAX];
    test_name(name, "wrap");
    cd_ring r;
    ck_assert_int_eq(cd_ring_create(&r, name, 65536), 0);
    uint64_t S = r.size;
    uint8_t *p;
    ck_assert_uint_eq(cd_ring_writable(&r, &p), S);
    ck_assert_ptr_eq(p, r.data);
    cd_ring_produce(&r, S - 100);
    ck_assert_uint_eq(cd_ring_free(&r), 100);
    cd_ring_release(&r, S - 100);
    ck_assert_uint_eq(cd_ring_used(&r), 0);
    /* head is 100 bytes before the end: a 300-byte write wraps */
    ck_assert_uint_eq(cd_ring_writable(&r, &p), S);
    ck_assert_ptr_eq(p, r.data + S - 100);
    for (int i = 0; i < 300; i++)
        p[i] = (uint8_t)(i * 7 + 1);
    cd_ring_produce(&r, 300);
    /* the 200 wrapped bytes are at the start of the first mapping */
    for (int i = 0; i < 200; i++)
        ck_assert_uint_eq(r.data[i], (uint8_t)((100 + i) * 7 + 1));
    /* and the pointer for the unit start reads all 300 contiguously */
    const uint8_t *u = cd_ring_ptr(&r, S - 100);
    for (int i = 0; i < 300; i++)
        ck_assert_uint_eq(u[i], (uint8_t)(i * 7 + 1));
    ck_assert_uint_eq(r.hdr->head, r.head);
    cd_ring_unproduce(&r, 50);
    ck_assert_uint_eq(cd_ring_used(&r), 250);
    cd_ring_release(&r, 250);
    ck_assert_uint_eq(r.hdr->tail, S + 150);
    cd_ring_destroy(&r);
}
END_TEST

START_TEST(test_shared_with_child)
{
    char name[CD_RING_NAME_MAX];
    test_name(name, "fork");
    cd_ring r;
    ck_assert_int_eq(cd_ring_create(&r, name, 8192), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* child: writes across the wrap through the second mapping */
        uint8_t *p = r.data + r.size - 2;
        memcpy(p, "wxyz", 4);
        r.hdr->slot[3].pid = (int32_t)getpid();
        _exit(0);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_int_eq(memcmp(r.data + r.size - 2, "wx", 2), 0);
    ck_assert_int_eq(memcmp(r.data, "yz", 2), 0);
    ck_assert_int_eq(r.hdr->slot[3].pid, pid);
    cd_ring_destroy(&r);
}
END_TEST

START_TEST(test_stale_and_busy)
{
    char name[CD_RING_NAME_MAX];
    test_name(name, "stale");
    /* a child creates the segment and dies without cleaning up (crash) */
    int sync_pipe[2];
    ck_assert_int_eq(pipe(sync_pipe), 0);
    pid_t pid = fork();
    if (pid == 0) {
        cd_ring r;
        if (cd_ring_create(&r, name, 4096) != 0)
            _exit(1);
        char c = 'x';
        if (write(sync_pipe[1], &c, 1) != 1)
            _exit(1);
        pause(); /* until killed */
        _exit(0);
    }
    char c;
    ck_assert_int_eq(read(sync_pipe[0], &c, 1), 1);
    /* creator alive: refused */
    cd_ring r;
    ck_assert_int_eq(cd_ring_create(&r, name, 4096), -1);
    ck_assert_int_eq(errno, EBUSY);
    ck_assert_int_eq(cd_ring_cleanup_stale(name), -1);
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    /* creator dead: the stale segment is removed and a new one made */
    ck_assert_int_eq(cd_ring_create(&r, name, 4096), 0);
    ck_assert_int_eq(r.hdr->creator_pid, getpid());
    cd_ring_destroy(&r);
    ck_assert_int_eq(cd_ring_cleanup_stale(name), 0);
    close(sync_pipe[0]);
    close(sync_pipe[1]);
}
END_TEST

static Suite *suite_ring(void)
{
    Suite *s = suite_create("ring");
    TCase *tc = tcase_create("shm");
    tcase_add_test(tc, test_header_and_name);
    tcase_add_test(tc, test_wraparound_is_contiguous);
    tcase_add_test(tc, test_shared_with_child);
    tcase_add_test(tc, test_stale_and_busy);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_ring)
