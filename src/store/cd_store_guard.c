/*
 * cd_store_guard.c - SIGBUS / SIGSEGV inside an LMDB map: one log line
 * naming the file, then _exit(2) (issue 11, F7). See cd_store_guard.h.
 *
 * Everything the handler touches is static memory written before the
 * handlers can run or with a "used" flag set last; the handler formats with
 * its own small helpers (no stdio, which is not async-signal-safe), takes
 * the time with clock_gettime and turns it into a date by arithmetic.
 */
#include "cd_store_guard.h"

#include "cd_log.h"

#include <dlfcn.h>
#include <link.h>
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#define GUARD_MAX 16

typedef struct guard_map {
    volatile sig_atomic_t used;
    uintptr_t lo, hi;
    char file[256];
} guard_map;

static guard_map g_maps[GUARD_MAX];
static int g_installed;
static int g_journal;
static uintptr_t g_lmdb_lo, g_lmdb_hi; /* liblmdb's code; 0: unknown */

/* ---- async-signal-safe formatting ---- */

typedef struct sbuf {
    char *p;
    size_t len, n;
} sbuf;

static void put_s(sbuf *b, const char *s)
{
    while (*s && b->n + 1 < b->len)
        b->p[b->n++] = *s++;
    b->p[b->n] = '\0';
}

static void put_u(sbuf *b, unsigned long long v, int width)
{
    char t[24];
    int i = 0;
    do {
        t[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && i < 23);
    while (i < width && i < 23)
        t[i++] = '0';
    char o[24];
    for (int k = 0; k < i; k++)
        o[k] = t[i - 1 - k];
    o[i] = '\0';
    put_s(b, o);
}

/* "YYYY-MM-DDTHH:MM:SS.mmmZ " as cd_log writes it (civil date from days:
 * the proleptic Gregorian algorithm, in integers). */
static void put_time(sbuf *b)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long s = ts.tv_sec, days = s / 86400, sod = s % 86400;
    long long z = days + 719468, era = (z >= 0 ? z : z - 146096) / 146097;
    long long doe = z - era * 146097;
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long y = yoe + era * 400, doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long long mp = (5 * doy + 2) / 153, d = doy - (153 * mp + 2) / 5 + 1;
    long long m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    put_u(b, (unsigned long long)y, 4);
    put_s(b, "-");
    put_u(b, (unsigned long long)m, 2);
    put_s(b, "-");
    put_u(b, (unsigned long long)d, 2);
    put_s(b, "T");
    put_u(b, (unsigned long long)(sod / 3600), 2);
    put_s(b, ":");
    put_u(b, (unsigned long long)(sod / 60 % 60), 2);
    put_s(b, ":");
    put_u(b, (unsigned long long)(sod % 60), 2);
    put_s(b, ".");
    put_u(b, (unsigned long long)(ts.tv_nsec / 1000000), 3);
    put_s(b, "Z ");
}

size_t cd_store_guard_format(char *buf, size_t len, int sig, const char *file,
                             unsigned long long off)
{
    sbuf b = {buf, len, 0};
    if (len == 0)
        return 0;
    buf[0] = '\0';
    if (g_journal)
        put_s(&b, "<3>");
    else
        put_time(&b);
    put_s(&b, "ERROR ");
    put_s(&b, cd_log_component());
    put_s(&b, "[");
    put_u(&b, (unsigned long long)getpid(), 1);
    put_s(&b, "]: fatal ");
    put_s(&b, sig == SIGBUS ? "SIGBUS" : "SIGSEGV");
    put_s(&b, " reading the LMDB file ");
    put_s(&b, file ? file : "(one of this process's LMDB files)");
    if (off != UINT64_MAX) {
        put_s(&b, " at offset ");
        put_u(&b, off, 1);
    }
    put_s(&b, ": the file is damaged or truncated. Stop conduitd, check the stores with "
              "`conduit-cli verify --full`, then restore the file from a backup or delete "
              "its directory to fetch it again; exiting with status 2 (not restarted)\n");
    return b.n;
}

/* ---- the handler ---- */

static uintptr_t fault_pc(void *uc)
{
#if defined(__x86_64__)
    return (uintptr_t)((ucontext_t *)uc)->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    return (uintptr_t)((ucontext_t *)uc)->uc_mcontext.pc;
#else
    (void)uc;
    return 0;
#endif
}

static void on_fault(int sig, siginfo_t *si, void *uc)
{
    uintptr_t a = (uintptr_t)si->si_addr, pc = fault_pc(uc);
    const char *file = NULL;
    unsigned long long off = UINT64_MAX;
    int ours = 0;
    for (int i = 0; i < GUARD_MAX; i++) {
        if (g_maps[i].used && a >= g_maps[i].lo && a < g_maps[i].hi) {
            file = g_maps[i].file;
            off = (unsigned long long)(a - g_maps[i].lo);
            ours = 1;
            break;
        }
    }
    if (!ours && g_lmdb_lo && pc >= g_lmdb_lo && pc < g_lmdb_hi) {
        ours = 1;
        int n = 0, last = -1;
        for (int i = 0; i < GUARD_MAX; i++)
            if (g_maps[i].used) {
                n++;
                last = i;
            }
        if (n == 1)
            file = g_maps[last].file; /* the only one it can be */
    }
    if (!ours) {
        /* not ours: the default action (core dump) when the instruction
         * runs again */
        signal(sig, SIG_DFL);
        return;
    }
    char line[1024];
    size_t n = cd_store_guard_format(line, sizeof(line), sig, file, off);
    (void)n;
    cd_log_raw_signal_safe(line);
    _exit(2);
}

/* The executable segments of the object that holds mdb_txn_begin, unless it
 * is the program itself (a static liblmdb: then only map addresses count). */
static int find_lmdb(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    uintptr_t base = (uintptr_t)arg;
    if ((uintptr_t)info->dlpi_addr != base || !info->dlpi_name || !info->dlpi_name[0])
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
            continue;
        uintptr_t lo = base + ph->p_vaddr, hi = lo + ph->p_memsz;
        if (!g_lmdb_lo || lo < g_lmdb_lo)
            g_lmdb_lo = lo;
        if (hi > g_lmdb_hi)
            g_lmdb_hi = hi;
    }
    return 1;
}

static void install(void)
{
    g_installed = 1;
    g_journal = cd_log_under_journal();
    Dl_info di;
    if (dladdr((void *)(uintptr_t)mdb_txn_begin, &di) != 0 && di.dli_fbase)
        dl_iterate_phdr(find_lmdb, di.dli_fbase);
    /* an alternate stack: a fault from a runaway recursion still logs */
    static char stack[64 * 1024];
    stack_t ss = {.ss_sp = stack, .ss_size = sizeof(stack), .ss_flags = 0};
    sigaltstack(&ss, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGSEGV, &sa, NULL);
}

void cd_store_guard_add(const void *map, size_t size, const char *file)
{
    if (!g_installed)
        install();
    int slot = -1;
    for (int i = 0; i < GUARD_MAX; i++) {
        if (g_maps[i].used && strncmp(g_maps[i].file, file, sizeof(g_maps[i].file) - 1) == 0) {
            slot = i;
            break;
        }
        if (!g_maps[i].used && slot < 0)
            slot = i;
    }
    if (slot < 0)
        return;
    guard_map *g = &g_maps[slot];
    g->used = 0; /* the handler ignores it while it changes */
    g->lo = (uintptr_t)map;
    g->hi = (uintptr_t)map + size;
    size_t n = strlen(file);
    if (n > sizeof(g->file) - 1)
        n = sizeof(g->file) - 1;
    memcpy(g->file, file, n);
    g->file[n] = '\0';
    g->used = 1;
}

/* LMDB does not tell where it mapped the file (mdb_env_info's me_mapaddr
 * is the address asked for with MDB_FIXEDMAP, else NULL): the mapping of
 * the file is looked up in /proc/self/maps. 0 with *lo, *hi, or -1. */
static int find_mapping(const char *file, uintptr_t *lo, uintptr_t *hi)
{
    char real[4096];
    if (!realpath(file, real))
        return -1;
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return -1;
    char line[4096 + 128];
    int found = 0;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        char *path = strchr(line, '/');
        if (!path || strcmp(path, real) != 0)
            continue;
        unsigned long a, b;
        if (sscanf(line, "%lx-%lx", &a, &b) != 2)
            continue;
        if (!found || a < *lo)
            *lo = a;
        if (!found || b > *hi)
            *hi = b;
        found = 1;
    }
    fclose(f);
    return found ? 0 : -1;
}

void cd_store_guard_env(struct MDB_env *env, const char *dir)
{
    (void)env; /* its map is found by file name (see find_mapping) */
    char f[4096];
    size_t n = strlen(dir);
    if (n + sizeof("/data.mdb") > sizeof(f))
        return;
    memcpy(f, dir, n);
    memcpy(f + n, "/data.mdb", sizeof("/data.mdb"));
    uintptr_t lo = 0, hi = 0;
    if (find_mapping(f, &lo, &hi) == 0)
        cd_store_guard_add((const void *)lo, (size_t)(hi - lo), f);
}

void cd_store_guard_env_closed(const char *dir)
{
    char f[4096];
    size_t n = strlen(dir);
    if (n + sizeof("/data.mdb") > sizeof(f))
        return;
    memcpy(f, dir, n);
    memcpy(f + n, "/data.mdb", sizeof("/data.mdb"));
    cd_store_guard_remove(f);
}

void cd_store_guard_remove(const char *file)
{
    for (int i = 0; i < GUARD_MAX; i++)
        if (g_maps[i].used && strncmp(g_maps[i].file, file, sizeof(g_maps[i].file) - 1) == 0)
            g_maps[i].used = 0;
}
