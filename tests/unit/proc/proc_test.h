/*
 * proc_test.h - what the process-table tests (test_supervisor.c,
 * test_resident.c) share: the main of a child that runs until it is
 * signalled.
 */
#ifndef CD_PROC_TEST_H
#define CD_PROC_TEST_H

#include <unistd.h>

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
