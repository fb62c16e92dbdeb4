/*
 * cd_resident.h - a module's resident children whose channel the controller
 * only holds open: their rows of the process table, the controller's end of
 * each channel, and what an exit 2 means to the module.
 *
 * Why it exists: the key-rows step (src/index/cd_keyrows.c), the webhook
 * delivery (src/api/cd_http_hooks_send.c) and the HTTP and metrics servers
 * (src/api/cd_http.c) are respawned children whose channel carries nothing
 * once started (the HTTP servers get their listening socket over it first):
 * the controller keeps its end open because the child takes the channel's
 * EOF for the controller's death (cd_child_exit, cd_signals.h). Each of
 * them had the same slot / channel / up / down / fatal code; it is here
 * once. Children whose channel carries messages are not residents of this
 * kind: the pipeline's workers (a bufferevent per worker, a lost worker's
 * blocks are dispatched again) keep their own callbacks, and the run-once
 * helpers that report their result in messages are cd_helper.h's.
 *
 * A group is owned by one module: every member is a row of the process
 * table whose callbacks' arg is the group, so cd_resident_free() stops
 * exactly its members (cd_sup_stop with the group as owner), in one bounded
 * wait for all of them.
 *
 *   a member (re)starts   the old channel end is closed, the new one kept;
 *                         then hooks->on_up (may be NULL)
 *   a member ends         its channel end is closed; then hooks->on_down
 *   a member exits 2      (after on_down) the group's `fatal` line is
 *                         logged as an error; the supervisor does not
 *                         respawn it, nothing else happens: the module's
 *                         feature stays off until conduitd restarts
 */
#ifndef CD_RESIDENT_H
#define CD_RESIDENT_H

#include <stdint.h>

#include "cd_err.h" /* CD_WARN_UNUSED */
#include "cd_supervisor.h"

typedef struct cd_resident cd_resident;

/* What a module adds to the common bookkeeping (all may be NULL). They run
 * in the controller's loop; member is the number cd_resident_add returned. */
typedef struct cd_resident_hooks {
    void *arg;
    /* A member (re)started: fd is its channel end, kept by the group
     * (borrowed: do not close it; cd_resident_kill to give up on it). */
    void (*on_up)(void *arg, int member, int fd);
    /* A member ended (code: exit status or -signal, logged by the
     * supervisor); its channel end is already closed. */
    void (*on_down)(void *arg, int member, int code);
} cd_resident_hooks;

/* Creates an empty group.
 * In:  sup    the process table (cd_ctl_sup: borrowed, outlives the group)
 *      fatal  logged (error) when a member exits 2 (borrowed: static text)
 *      hooks  copied; may be NULL; hooks->arg must outlive the group
 * Returns: the group (cd_resident_free); never NULL (allocation aborts). */
cd_resident *cd_resident_new(cd_supervisor *sup, const char *fatal, const cd_resident_hooks *hooks);

/* Adds a member: a row of kind (a CD_SUP_RESPAWN kind), not started yet.
 * In:  kind   borrowed, static
 *      index  its number among children of its kind (logs)
 *      arg    handed to kind->main in the child (borrowed)
 * Returns: its member number (0, 1, ... in the order added), or
 *          CD_SUP_EFULL when the process table is full. */
int cd_resident_add(cd_resident *r, const cd_sup_kind *kind, uint32_t index,
                    void *arg) CD_WARN_UNUSED;

/* Forks every member. A fork that fails is logged and retried by the
 * process table with back-off, as after any death, so it cannot fail. */
void cd_resident_launch(cd_resident *r);

/* Returns: the member number of a process-table slot, or -1 if the slot is
 * not the group's. Also valid in a forked member (its main gets its slot). */
int cd_resident_member(const cd_resident *r, int slot);

/* Kills a member with SIGKILL; it is respawned like after any death. */
void cd_resident_kill(cd_resident *r, int member);

/* The common case: a group of one member of kind (index 0), launched.
 * In:  as cd_resident_new and cd_resident_add (no hooks)
 * Out: *out the group (cd_resident_free), NULL on failure
 * Returns: 0, or CD_SUP_EFULL when the process table is full (nothing is
 *          left behind; the caller logs it, naming what it could not add). */
int cd_resident_one(cd_supervisor *sup, const cd_sup_kind *kind, void *arg, const char *fatal,
                    cd_resident **out) CD_WARN_UNUSED;

/* Stops every member (SIGTERM, up to timeout_ms, then SIGKILL; on_down runs
 * for each), frees their rows, closes the channel ends and frees the group.
 * Blocks (shutdown, or a failed module init). Accepts NULL. */
void cd_resident_free(cd_resident *r, int timeout_ms);

#endif /* CD_RESIDENT_H */
