/*
 * test_arc_shared.c - the ARC status table the HTTP server processes share
 * (src/api/cd_http_arc_cb.c, cd_http_int.h): real processes on one
 * MAP_SHARED table, as the controller maps it before forking the servers.
 *
 * A GET /arc/v1/tx/<txid> may land on another server than the POST that
 * recorded the status; that server reads the slot while the other may be
 * writing it again (the broadcast's answer after RECEIVED, a callback's
 * word, a second POST of the same tx). A read must then wait for the write,
 * never answer "unknown" (a false 404), and never take the status of one
 * write with the extra text of another (two writers at once).
 */
#include "cd_test.h"

#include "cd_http_arc_int.h"
#include "cd_util.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define WRITES 200000 /* per writer */
#define READS  200000

typedef struct shared_mem {
    http_arc_slot tab[HTTP_ARC_SLOTS];
    volatile int stop;
} shared_mem;

static const uint8_t TXID[32] = {0x42, 0x01, 0x02, 0x03};

/* Writer `which` (0 or 1) records its own status with its own extra text
 * (long: a write takes a while) until told to stop. */
static void writer(shared_mem *m, int which)
{
    char extra[200];
    memset(extra, which ? 'y' : 'x', sizeof(extra) - 1);
    extra[sizeof(extra) - 1] = '\0';
    const char *status = which ? "MINED" : "SEEN_ON_NETWORK";
    arc_shared_attach(m->tab); /* this process's own claim (its pid), as a server's */
    for (int i = 0; i < WRITES && !m->stop; i++)
        arc_rec_status(TXID, status, extra, NULL);
    _exit(0);
}

/* Reads the slot READS times while nwriters processes write it. Returns
 * the number of reads that found nothing and of reads that were torn. */
static void run(int nwriters, long *missing, long *torn)
{
    shared_mem *m =
        mmap(NULL, sizeof(*m), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(m, MAP_FAILED);
    arc_shared_attach(m->tab);
    arc_rec_status(TXID, "RECEIVED", "", NULL); /* the POST's first word */
    pid_t w[2];
    for (int i = 0; i < nwriters; i++) {
        w[i] = fork();
        ck_assert_int_ge(w[i], 0);
        if (w[i] == 0)
            writer(m, i);
    }
    *missing = *torn = 0;
    for (int i = 0; i < READS; i++) {
        char st[32], ex[256];
        if (!arc_shared_get(TXID, st, ex)) {
            (*missing)++;
            continue;
        }
        int ok = (!strcmp(st, "RECEIVED") && ex[0] == '\0') ||
                 (!strcmp(st, "SEEN_ON_NETWORK") && strspn(ex, "x") == 199 && !ex[199]) ||
                 (!strcmp(st, "MINED") && strspn(ex, "y") == 199 && !ex[199]);
        *torn += !ok;
    }
    m->stop = 1;
    for (int i = 0; i < nwriters; i++) {
        int wst;
        ck_assert_int_eq(waitpid(w[i], &wst, 0), w[i]);
        ck_assert(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
    }
    /* the last word stays readable */
    char st[32], ex[256];
    ck_assert_int_eq(arc_shared_get(TXID, st, ex), 1);
    arc_shared_attach(NULL);
    munmap(m, sizeof(*m));
}

START_TEST(test_read_during_a_write_waits)
{
    long missing, torn;
    run(1, &missing, &torn);
    ck_assert_msg(missing == 0, "%ld of %d reads found no status while it was being rewritten",
                  missing, READS);
    ck_assert_int_eq(torn, 0);
}
END_TEST

START_TEST(test_two_writers_never_tear_a_slot)
{
    long missing, torn;
    run(2, &missing, &torn);
    ck_assert_msg(torn == 0, "%ld of %d reads mixed two writes", torn, READS);
    ck_assert_int_eq(missing, 0);
}
END_TEST

/* A server killed in the middle of a write leaves its slot claimed: a
 * reader must not wait for it forever (the slot is then unknown), and the
 * next writer takes the slot over. */
START_TEST(test_writer_killed_mid_write)
{
    shared_mem *m =
        mmap(NULL, sizeof(*m), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(m, MAP_FAILED);
    arc_shared_attach(m->tab);
    arc_rec_status(TXID, "RECEIVED", "", NULL);
    pid_t dead = fork();
    ck_assert_int_ge(dead, 0);
    if (dead == 0)
        _exit(0);
    ck_assert_int_eq(waitpid(dead, NULL, 0), dead);
    /* what a writer that died between its two seq stores leaves behind */
    http_arc_slot *sl = &m->tab[cd_le32(TXID) % HTTP_ARC_SLOTS]; /* shared_slot() */
    ck_assert(memcmp(sl->txid, TXID, 32) == 0);
    sl->writer = (int32_t)dead;
    sl->seq |= 1u;
    char st[32], ex[256];
    ck_assert_int_eq(arc_shared_get(TXID, st, ex), 0);
    arc_rec_status(TXID, "SEEN_ON_NETWORK", "again", NULL);
    ck_assert_int_eq(arc_shared_get(TXID, st, ex), 1);
    ck_assert_str_eq(st, "SEEN_ON_NETWORK");
    ck_assert_str_eq(ex, "again");
    ck_assert_int_eq(sl->seq & 1u, 0);
    ck_assert_int_eq(sl->writer, 0);
    arc_shared_attach(NULL);
    munmap(m, sizeof(*m));
}
END_TEST

static Suite *suite_arc_shared(void)
{
    Suite *s = suite_create("arc_shared");
    TCase *tc = tcase_create("slots");
    tcase_add_test(tc, test_read_during_a_write_waits);
    tcase_add_test(tc, test_two_writers_never_tear_a_slot);
    tcase_add_test(tc, test_writer_killed_mid_write);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_arc_shared)
