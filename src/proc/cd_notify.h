/*
 * cd_notify.h - the systemd notification protocol (sd_notify) without
 * libsystemd: datagrams "READY=1", "STATUS=...", "STOPPING=1",
 * "WATCHDOG=1" sent to the unix socket named by $NOTIFY_SOCKET
 * (an abstract socket when it starts with '@').
 *
 * When NOTIFY_SOCKET is unset every call is a cheap no-op returning 0, so
 * callers never need to check whether they run under systemd.
 *
 * NOTES
 *  - cd_notify_init() reads and then unsets NOTIFY_SOCKET, WATCHDOG_USEC and
 *    WATCHDOG_PID so forked workers do not talk to systemd; only the process
 *    that called init (the controller) notifies.
 *  - The socket is opened per message (CLOEXEC) so nothing crosses a fork.
 */
#ifndef CD_NOTIFY_H
#define CD_NOTIFY_H

#include <stdint.h>

#include "cd_log.h" /* CD_PRINTF */
#include "cd_err.h" /* CD_WARN_UNUSED */

/* Reads the environment. Call once in main() before forking anything.
 * Returns 1 if notifications are enabled, 0 if not. */
int cd_notify_init(void);

/* Returns: 1 if NOTIFY_SOCKET was set at init, else 0. */
int cd_notify_enabled(void);

/* Sends a raw state string (may hold several "\n"-separated assignments).
 * Returns 0 (also when disabled), or -1 with errno set. */
int cd_notify_send(const char *state) CD_WARN_UNUSED;

/* The four below send one state with cd_notify_send. Returns: as
 * cd_notify_send (callers ignore it: notifications are best effort). */

/* "READY=1": storage is open and peers are being dialled. */
int cd_notify_ready(void) CD_WARN_UNUSED;

/* "STATUS=<text>" (printf-style; newlines are replaced by spaces). */
int cd_notify_status(const char *fmt, ...) CD_PRINTF(1, 2) CD_WARN_UNUSED;

/* "STOPPING=1": clean shutdown begun. */
int cd_notify_stopping(void) CD_WARN_UNUSED;

/* "WATCHDOG=1": keep-alive; call at least every cd_notify_watchdog_usec()/2. */
int cd_notify_watchdog(void) CD_WARN_UNUSED;

/* Returns: WATCHDOG_USEC from the environment at init (0: watchdog
 * disabled, or the watchdog was meant for another pid per WATCHDOG_PID). */
uint64_t cd_notify_watchdog_usec(void);

struct event_base;
struct event;

/* Adds a persistent timer on `base` that sends WATCHDOG=1 every
 * cd_notify_watchdog_usec()/2. Because it runs in the loop, a stalled loop
 * stops the keep-alives and systemd restarts the service.
 * Returns the event (free with event_free before the base), or NULL when the
 * watchdog is disabled. */
struct event *cd_notify_watchdog_start(struct event_base *base);

#endif /* CD_NOTIFY_H */
