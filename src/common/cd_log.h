/*
 * cd_log.h - the one logging call of the project.
 *
 * Every process (controller, workers, conduit-cli) logs through cd_log().
 * Output goes to stderr or to a file. Under systemd (JOURNAL_STREAM set) lines
 * carry a "<N>" syslog priority prefix and no timestamp, because journald adds
 * its own; otherwise lines start with an ISO-8601 UTC timestamp.
 *
 * Line format:  [timestamp ]LEVEL component[pid]: message
 *
 * The level is checked before the arguments are formatted, so disabled debug
 * lines cost one comparison. The logger is per process (global state, no
 * locking): one thread logs.
 */
#ifndef CD_LOG_H
#define CD_LOG_H

#include <stdarg.h>

#include "cd_err.h" /* CD_WARN_UNUSED */

typedef enum cd_log_level {
    CD_LOG_ERROR = 0,
    CD_LOG_WARN = 1,
    CD_LOG_INFO = 2,
    CD_LOG_DEBUG = 3,
} cd_log_level;

/* Sets the component name shown on every line ("conduitd", "parser-2", ...).
 * The string is copied. */
void cd_log_set_component(const char *name);

/* Returns: the component name (static storage: safe to read in a signal
 * handler, e.g. to build a line for cd_log_raw_signal_safe). */
const char *cd_log_component(void);

/* Minimum level written (default CD_LOG_INFO); get returns the current one. */
void cd_log_set_level(cd_log_level level);
cd_log_level cd_log_get_level(void);

/* Parses "error", "warn", "info", "debug".
 * Out: *out (untouched on failure). Returns: 0, or -1 if unknown. */
int cd_log_level_parse(const char *s, cd_log_level *out) CD_WARN_UNUSED;

/* Sends output to `path` (appending; the path is copied), or to stderr when
 * path is NULL (which cannot fail).
 * Returns: 0, or -1 with errno set (the previous destination is kept). */
int cd_log_open(const char *path) CD_WARN_UNUSED;

/* In a forked child that closed its inherited descriptors
 * (cd_close_fds_except): opens `path` like cd_log_open, and if that fails
 * logs to stderr instead, with a warning saying so. The previous
 * destination is never kept: its descriptor is closed, and its number may
 * be given to the child's next socket. Cannot fail. */
void cd_log_open_child(const char *path);

/* Re-opens the current log file (after logrotate moved it). Safe to call when
 * logging to stderr (no-op). Returns 0 or -1 with errno set. */
int cd_log_reopen(void) CD_WARN_UNUSED;

/* Returns: 1 when lines carry no timestamp (stderr is the journal), else 0. */
int cd_log_under_journal(void);

#if defined(__GNUC__)
#define CD_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CD_PRINTF(a, b)
#endif

/* Writes one line (a trailing newline is added; errors writing it are
 * ignored: there is nowhere to report them). Use the cd_log_* macros. */
void cd_log_write(cd_log_level level, const char *fmt, ...) CD_PRINTF(2, 3);
void cd_log_vwrite(cd_log_level level, const char *fmt, va_list ap);

#define cd_log(level, ...)                                                                         \
    do {                                                                                           \
        if ((level) <= cd_log_get_level())                                                         \
            cd_log_write((level), __VA_ARGS__);                                                    \
    } while (0)

#define cd_log_error(...) cd_log(CD_LOG_ERROR, __VA_ARGS__)
#define cd_log_warn(...)  cd_log(CD_LOG_WARN, __VA_ARGS__)
#define cd_log_info(...)  cd_log(CD_LOG_INFO, __VA_ARGS__)
#define cd_log_debug(...) cd_log(CD_LOG_DEBUG, __VA_ARGS__)

/* Async-signal-safe: formats nothing, just write(2)s `msg` to the current log
 * descriptor. For use from signal handlers and after fork() in error paths. */
void cd_log_raw_signal_safe(const char *msg);

#endif /* CD_LOG_H */
