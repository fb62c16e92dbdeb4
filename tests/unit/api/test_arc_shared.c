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
 *
 * And a status never moves back: the POST's RECEIVED is written only if the
 * slot has no word yet, and the other words only forward in ARC's order,
 * each decided in the same step as the write (a check followed by a write
 * let another server's SEEN_ON_NETWORK or MINED land in between and be
 * overwritten).
 */
#include "cd_test.h"

#include "cd_http_arc_int.h"
#include "cd_util.h"

#include <sched.h>
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

/* Writer `which` (0 or 1) records `status` with its own extra text (long:
 * a write takes a while) until told to stop. Two writers write words of
 * one rank, so that neither refuses the other's (only forward). */
static void writer(shared_mem *m, int which, const char *status)
{
    char extra[200];
    memset(extra, which ? 'y' : 'x', sizeof(extra) - 1);
    extra[sizeof(extra) - 1] = '\0';
    arc_shared_attach(m->tab); /* this process's own claim (its pid), as a server's */
    for (int i = 0; i < WRITES && !m->stop; i++)
        if (!arc_rec_status(TXID, status, extra, NULL, ARC_PUT_FORWARD))
            _exit(3); /* a word of equal rank must be written */
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
    /* the POST's first word */
    ck_assert(arc_rec_status(TXID, "RECEIVED", "", NULL, ARC_PUT_IF_ABSENT));
    pid_t w[2];
    for (int i = 0; i < nwriters; i++) {
        w[i] = fork();
        ck_assert_int_ge(w[i], 0);
        if (w[i] == 0)
            writer(m, i, nwriters == 1 ? "SEEN_ON_NETWORK" : "MINED");
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
                 (!strcmp(st, "MINED") && (strspn(ex, "x") == 199 || strspn(ex, "y") == 199) &&
                  !ex[199]);
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
    ck_assert(arc_rec_status(TXID, "RECEIVED", "", NULL, ARC_PUT_IF_ABSENT));
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
    /* the half-written slot is no status of this tx: even "if absent" writes */
    ck_assert(arc_rec_status(TXID, "SEEN_ON_NETWORK", "again", NULL, ARC_PUT_IF_ABSENT));
    ck_assert_int_eq(arc_shared_get(TXID, st, ex), 1);
    ck_assert_str_eq(st, "SEEN_ON_NETWORK");
    ck_assert_str_eq(ex, "again");
    ck_assert_int_eq(sl->seq & 1u, 0);
    ck_assert_int_eq(sl->writer, 0);
    arc_shared_attach(NULL);
    munmap(m, sizeof(*m));
}
END_TEST

/* ---- no step back: two servers writing one tx's slot at the same moment ---- */

#define ROUNDS 100000

typedef struct race_mem {
    http_arc_slot tab[HTTP_ARC_SLOTS];
    int arrived[2]; /* the round each process has reached */
    int done[2];    /* the round each process has written */
    const char *loser;
    long lost; /* rounds that ended on the loser (counted by process 0) */
} race_mem;

/* A txid per round, in a slot of its own for 4096 rounds (shared_slot()
 * takes the first 4 bytes). */
static void round_txid(int r, uint8_t txid[32])
{
    memset(txid, 0, 32);
    txid[0] = (uint8_t)r;
    txid[1] = (uint8_t)(r >> 8);
    txid[2] = (uint8_t)(r >> 16);
    txid[31] = 0x5a;
}

static void wait_for(const int *cell, int r)
{
    for (unsigned spins = 0; __atomic_load_n(cell, __ATOMIC_ACQUIRE) < r; spins++)
        if (spins > 64)
            sched_yield(); /* 2 cores: the other side may need this one */
}

/* Process `me` writes (word, mode) of each round once both have arrived at
 * it, so the two writes of a round meet; the parent counts the rounds that
 * end on `loser` (the word that must not win). */
static void racer(race_mem *m, int me, const char *word, arc_put_mode mode)
{
    arc_shared_attach(m->tab);
    uint32_t rnd = 2463534242u + (uint32_t)me * 7919u;
    for (int r = 1; r <= ROUNDS; r++) {
        uint8_t txid[32];
        round_txid(r, txid);
        __atomic_store_n(&m->arrived[me], r, __ATOMIC_RELEASE);
        wait_for(&m->arrived[!me], r);
        /* a random head start of 0-127 turns (xorshift32), so that over the
         * rounds one write starts at every point of the other */
        rnd ^= rnd << 13;
        rnd ^= rnd >> 17;
        rnd ^= rnd << 5;
        for (volatile unsigned k = rnd % 128u; k > 0; k--)
            ;
        CD_IGNORE(arc_rec_status(txid, word, "", NULL, mode)); /* refusals expected */
        __atomic_store_n(&m->done[me], r, __ATOMIC_RELEASE);
        if (me == 0) {
            char st[32], ex[256];
            wait_for(&m->done[1], r);
            if (arc_shared_get(txid, st, ex) && !strcmp(st, m->loser))
                m->lost++;
        }
    }
    _exit(0);
}

/* Races (word0, mode0) against (word1, mode1) ROUNDS times; returns the
 * rounds whose slot ended on `loser`. */
static long race(const char *word0, arc_put_mode mode0, const char *word1, arc_put_mode mode1,
                 const char *loser)
{
    race_mem *m = mmap(NULL, sizeof(*m), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(m, MAP_FAILED);
    m->loser = loser; /* a string literal: the same address in the children */
    pid_t p[2];
    for (int i = 0; i < 2; i++) {
        p[i] = fork();
        ck_assert_int_ge(p[i], 0);
        if (p[i] == 0)
            racer(m, i, i ? word1 : word0, i ? mode1 : mode0);
    }
    for (int i = 0; i < 2; i++) {
        int wst;
        ck_assert_int_eq(waitpid(p[i], &wst, 0), p[i]);
        ck_assert(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
    }
    arc_shared_attach(m->tab);
    long lost = m->lost;
    for (int r = ROUNDS - HTTP_ARC_SLOTS + 1; r <= ROUNDS; r++) { /* the slots kept */
        uint8_t txid[32];
        char st[32], ex[256];
        round_txid(r, txid);
        ck_assert_int_eq(arc_shared_get(txid, st, ex), 1);
    }
    arc_shared_attach(NULL);
    munmap(m, sizeof(*m));
    return lost;
}

/* The POST's server records RECEIVED while the node's answer
 * (SEEN_ON_NETWORK) is recorded by another server: RECEIVED never lands
 * on top of it. */
START_TEST(test_received_never_over_a_later_word)
{
    long lost = race("RECEIVED", ARC_PUT_IF_ABSENT, "SEEN_ON_NETWORK", ARC_PUT_FORWARD, "RECEIVED");
    ck_assert_msg(lost == 0, "%ld of %d rounds ended on RECEIVED after SEEN_ON_NETWORK", lost,
                  ROUNDS);
}
END_TEST

/* A poll records MINED while a late node answer records SEEN_ON_NETWORK:
 * the tx stays MINED, whichever write comes second. */
START_TEST(test_words_only_forward)
{
    long lost =
        race("MINED", ARC_PUT_FORWARD, "SEEN_ON_NETWORK", ARC_PUT_FORWARD, "SEEN_ON_NETWORK");
    ck_assert_msg(lost == 0, "%ld of %d rounds ended on SEEN_ON_NETWORK after MINED", lost, ROUNDS);
}
END_TEST

/* One process, the rules themselves: the order, a refused word keeps the
 * slot, extra NULL keeps the slot's extra text, a word of equal rank
 * rewrites it. */
START_TEST(test_put_modes)
{
    static http_arc_slot tab[HTTP_ARC_SLOTS];
    memset(tab, 0, sizeof(tab));
    arc_shared_attach(tab);
    char st[32], ex[256];
    ck_assert(arc_rec_status(TXID, "RECEIVED", "", NULL, ARC_PUT_IF_ABSENT));
    ck_assert(!arc_rec_status(TXID, "RECEIVED", "", NULL, ARC_PUT_IF_ABSENT));
    ck_assert(arc_rec_status(TXID, "SEEN_ON_NETWORK", "first seen", NULL, ARC_PUT_FORWARD));
    ck_assert(!arc_rec_status(TXID, "RECEIVED", "", NULL, ARC_PUT_IF_ABSENT));
    ck_assert(!arc_rec_status(TXID, "SENT_TO_NETWORK", "x", NULL, ARC_PUT_FORWARD));
    ck_assert(arc_rec_status(TXID, "SEEN_ON_NETWORK", NULL, NULL, ARC_PUT_FORWARD));
    ck_assert_int_eq(arc_shared_get(TXID, st, ex), 1);
    ck_assert_str_eq(st, "SEEN_ON_NETWORK");
    ck_assert_str_eq(ex, "first seen");
    ck_assert(arc_rec_status(TXID, "MINED", "", NULL, ARC_PUT_FORWARD));
    ck_assert(!arc_rec_status(TXID, "REJECTED", "late", NULL, ARC_PUT_FORWARD));
    ck_assert_int_eq(arc_shared_get(TXID, st, ex), 1);
    ck_assert_str_eq(st, "MINED");
    ck_assert_int_lt(arc_status_rank("RECEIVED"), arc_status_rank("SENT_TO_NETWORK"));
    ck_assert_int_lt(arc_status_rank("SEEN_IN_ORPHAN_MEMPOOL"), arc_status_rank("SEEN_ON_NETWORK"));
    ck_assert_int_lt(arc_status_rank("DOUBLE_SPEND_ATTEMPTED"), arc_status_rank("REJECTED"));
    ck_assert_int_lt(arc_status_rank("REJECTED"), arc_status_rank("MINED"));
    ck_assert_int_eq(arc_status_rank("NOT_A_WORD"), 0);
    /* another tx in the same slot (a newer one took it): written */
    uint8_t other[32];
    memcpy(other, TXID, 32);
    other[31] ^= 1;
    ck_assert(arc_rec_status(other, "RECEIVED", "", NULL, ARC_PUT_IF_ABSENT));
    ck_assert_int_eq(arc_shared_get(TXID, st, ex), 0);
    arc_shared_attach(NULL);
}
END_TEST

static Suite *suite_arc_shared(void)
{
    Suite *s = suite_create("arc_shared");
    TCase *tc = tcase_create("slots");
    tcase_add_test(tc, test_read_during_a_write_waits);
    tcase_add_test(tc, test_two_writers_never_tear_a_slot);
    tcase_add_test(tc, test_writer_killed_mid_write);
    tcase_add_test(tc, test_put_modes);
    tcase_add_test(tc, test_received_never_over_a_later_word);
    tcase_add_test(tc, test_words_only_forward);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_arc_shared)
