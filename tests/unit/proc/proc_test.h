/*
 * proc_test.h - what the process-table tests (test_supervisor.c,
 * test_resident.c, test_helper.c) share: the main of a child that runs
 * until it is signalled, and the count of this process's open descriptors
 * (a leak check).
 */
#ifndef CD_PROC_TEST_H
#define CD_PROC_TEST_H

#include <check.h>
#include <dirent.h>
#include <unistd.h>

/* Entries of /proc/self/fd (the directory's own descriptor included, so
 * compare two counts, not a count with a constant). */
static inline int proc_test_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* A child's main (cd_sup_main_fn) that only waits for a signal. */
static inline void proc_test_main_sleep(void *arg, int slot, int fd)
{
    (void)arg;
    (void)slot;
    (void)fd;
    for (;;)
        pause();
}

#endif /* CD_PROC_TEST_H */
