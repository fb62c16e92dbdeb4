/*
 * cd_supervisor.h - the process table: forks every child process of the
 * daemon, reaps it and respawns it (DESIGN.md §2, STYLE.md C8/C9).
 *
 * One supervisor per process (the controller creates it: cd_ctl_sup()) and
 * one table of children in it. Each entry is {kind, index, component,
 * callbacks, pid, channel, respawn state}; a kind (cd_sup_kind) says what
 * the child runs and needs: its main function, whether it is resident
 * (respawned) or runs once, whether it keeps the block ring mapped and
 * whether it opens PostgreSQL sessions. The pipeline adds the block writer,
 * the merkle worker and the parsers (cd_pipe_workers.c), the HTTP module its
 * server (cd_http.c), the catch-up module its DDL helper (cd_catchup.c):
 * same fork hygiene, same reaping, same exit-code rules for all.
 *
 * Each start gets one end of a fresh AF_UNIX SOCK_STREAM socketpair
 * (CLOEXEC; the controller end non-blocking). In the child every descriptor
 * except its channel (and stdin/out/err) is closed, signal dispositions are
 * reset, the shared ring is unmapped unless the kind needs it, the log file
 * is reopened, and the kind's main is called: LMDB/PG handles are opened
 * there, after the fork.
 *
 * Death is noticed through SIGCHLD (an evsignal in the controller's loop:
 * the work happens in the loop, never in a signal handler); waitpid() is
 * called with WNOHANG only, except in cd_sup_stop() at shutdown.
 *
 *   exit code 2 (CD_EXIT_CONFIG)  a configuration error: never respawned,
 *                                 on_down then on_fatal
 *   other death, CD_SUP_RESPAWN   respawned after a back-off that doubles
 *                                 from 100 ms to 5 s and resets once a
 *                                 child has lived 10 s (cd_sup_backoff)
 *   any end, CD_SUP_ONCE          on_down; started again only by
 *                                 cd_sup_launch()
 *
 * Callbacks (per child, run in the controller's loop; arg = cbs->arg):
 *   on_up(arg, slot, fd)       a (re)started child's channel; the callee owns
 *                              the fd from then on (closes it when done)
 *   on_down(arg, slot, code)   the child of `slot` ended (code: its exit
 *                              status, or -signal); its channel may still
 *                              hold unread data
 *   on_fatal(arg, slot)        the child exited 2: it will not be restarted
 */
#ifndef CD_SUPERVISOR_H
#define CD_SUPERVISOR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cd_config.h"
#include "cd_err.h" /* CD_WARN_UNUSED */

/* The table's size: the pipeline's workers (writer, merkle, at most
 * CD_CONFIG_MAX_PARSER_WORKERS parsers), the HTTP servers (HTTP_PROCS = 4,
 * src/api/cd_http_int.h), the metrics server, the catch-up helper
 * (index-ddl), the partition merger, the webhook delivery
 * (src/api/cd_http_hooks_send.c), the key-rows step, and one spare: with
 * every option on and the most parsers, 11 rows besides the parsers (the
 * rows of docs/ARCHITECTURE.md section 5). */
#define CD_SUP_MAX_CHILDREN (CD_CONFIG_MAX_PARSER_WORKERS + 12)

/* Back-off bounds of a respawn (milliseconds) and the lifetime after which a
 * child counts as healthy (its back-off starts over). */
#define CD_SUP_BACKOFF_MIN_MS 100u
#define CD_SUP_BACKOFF_MAX_MS 5000u
#define CD_SUP_HEALTHY_NS     (10ull * 1000000000ull)

struct event_base;
typedef struct cd_supervisor cd_supervisor;

/* Main function of a child: runs in the forked child after the clean-up
 * described above (arg = the arg given to cd_sup_add, slot = its slot in the
 * table, fd = its end of the channel); must not return (if it does, the
 * child exits CD_EXIT_FAILURE). */
typedef void (*cd_sup_main_fn)(void *arg, int slot, int fd);

typedef enum cd_sup_restart {
    CD_SUP_RESPAWN, /* resident: started by cd_sup_start, respawned */
    CD_SUP_ONCE     /* runs to its end: started by cd_sup_launch only */
} cd_sup_restart;

/* What a kind of child runs and needs (static, one per kind). */
typedef struct cd_sup_kind {
    const char *name; /* "writer", "parser", "http", ...: logs */
    cd_sup_main_fn main;
    cd_sup_restart restart;
    /* 1: keeps the block ring mapped (cd_sup_set_ring); 0: the child unmaps
     * it before main, so a stray write cannot reach the ring */
    unsigned needs_ring;
    /* 1: opens PostgreSQL sessions: PGAPPNAME is set to conduitd-<component>
     * (unless the environment has one) so pg_stat_activity names the
     * process; pg_conninfo's application_name, when given, still wins */
    unsigned needs_pg;
} cd_sup_kind;

typedef struct cd_sup_cbs {
    void *arg;
    void (*on_up)(void *arg, int slot, int fd);     /* NULL: fd closed */
    void (*on_down)(void *arg, int slot, int code); /* may be NULL */
    void (*on_fatal)(void *arg, int slot);          /* may be NULL */
} cd_sup_cbs;

/* Creates the supervisor bound to the loop (watches SIGCHLD). base and cfg
 * are borrowed and must outlive it (the children reopen cfg->log_file).
 * Returns: the supervisor (cd_sup_free), or NULL on failure (logged). */
cd_supervisor *cd_sup_new(struct event_base *base, const cd_config *cfg) CD_WARN_UNUSED;

/* Registers the block ring: forget(arg) runs in every child whose kind has
 * needs_ring = 0, before its main (fn and arg borrowed; forget must only
 * unmap). One ring per process; a second call replaces the first. */
void cd_sup_set_ring(cd_supervisor *s, void (*forget)(void *arg), void *arg);

/* Adds a child (not started yet).
 * In:  kind       borrowed, must outlive the supervisor (static)
 *      index      its number among children of its kind (logs)
 *      component  its log component (copied; at most 31 bytes kept);
 *                 NULL: kind->name
 *      arg        handed to kind->main in the child (borrowed)
 *      cbs        copied; cbs->arg must outlive the child's entry
 * Returns: its slot (>= 0), or CD_SUP_EFULL when the table is full. */
int cd_sup_add(cd_supervisor *s, const cd_sup_kind *kind, uint32_t index, const char *component,
               void *arg, const cd_sup_cbs *cbs) CD_WARN_UNUSED;

/* Forks every CD_SUP_RESPAWN child that is not running.
 * Returns: 0, or CD_SUP_EFORK if a fork failed (logged; that slot is retried
 * with back-off). */
int cd_sup_start(cd_supervisor *s) CD_WARN_UNUSED;

/* Forks the child of one slot (either kind), e.g. a CD_SUP_ONCE helper.
 * Returns: 0; CD_SUP_ERUNNING if it is still running (or not yet reaped);
 * CD_SUP_ESLOT for a free or unknown slot; CD_SUP_EFORK when socketpair()
 * or fork() failed (logged; a CD_SUP_ONCE child is not retried, a resident
 * one is, with back-off). */
int cd_sup_launch(cd_supervisor *s, int slot) CD_WARN_UNUSED;

/* Kills the child of a slot with SIGKILL (e.g. after a protocol error); it
 * ends like any other death (a resident child is restarted). */
void cd_sup_kill(cd_supervisor *s, int slot);

/* Restarts of one kind of resident child: deaths the supervisor answered
 * with a respawn (not ends it asked for, nor exit code 2). */
typedef struct cd_sup_restart_count {
    const char *kind; /* cd_sup_kind.name (static) */
    uint64_t restarts;
} cd_sup_restart_count;

#define CD_SUP_MAX_KINDS 16

/* The restart counters of every resident kind ever added (0 included), in
 * the order kinds were first added, since cd_sup_new (also of children
 * stopped since). Out: out[0..max-1]. Returns: the number filled. */
size_t cd_sup_restarts(const cd_supervisor *s, cd_sup_restart_count *out, size_t max);

/* Returns: the pid of a slot's child, 0 if none. */
pid_t cd_sup_pid(const cd_supervisor *s, int slot);

/* Stops the children whose callbacks' arg is `owner` (NULL: every child):
 * SIGTERM, wait up to timeout_ms, then SIGKILL; on_down is called for each
 * as it is reaped. Their slots are then free: no callback of theirs runs
 * again. Blocks (called at shutdown only). */
void cd_sup_stop(cd_supervisor *s, const void *owner, int timeout_ms);

/* Frees the supervisor, stopping any child left (cd_sup_stop(s, NULL,
 * 5000)). Accepts NULL. */
void cd_sup_free(cd_supervisor *s);

/* ---- the rules, as pure functions (unit-tested) ---- */

/* The back-off before the next respawn. In: cur_ms the back-off the last
 * respawn used (0: none yet), lived_ns how long the dead child ran.
 * Returns: CD_SUP_BACKOFF_MIN_MS for a first death or after a healthy life
 * (lived_ns > CD_SUP_HEALTHY_NS), else twice cur_ms, at most
 * CD_SUP_BACKOFF_MAX_MS. */
uint32_t cd_sup_backoff(uint32_t cur_ms, uint64_t lived_ns);

typedef enum cd_sup_verdict {
    CD_SUP_RESTART, /* respawn after the back-off */
    CD_SUP_FATAL,   /* exit 2: configuration error, never respawned */
    CD_SUP_DONE     /* ended: stopping, or a CD_SUP_ONCE child */
} cd_sup_verdict;

/* What becomes of a child that ended. In: restart its kind's policy,
 * code its exit status or -signal (as on_down gets it), stopping 1 during
 * cd_sup_stop. Returns: the verdict (a signal is never a configuration
 * error; a ONCE child exiting 2 is FATAL too). */
cd_sup_verdict cd_sup_verdict_of(cd_sup_restart restart, int code, int stopping);

#endif /* CD_SUPERVISOR_H */
