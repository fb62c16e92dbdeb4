/*
 * cd_escape.h - untrusted text made safe for one log line, a status file or
 * JSON.
 *
 * Peers choose some of the text we print: user agents, reject messages and
 * reasons, names. Printed raw, a "\n" starts a forged log line and an ESC
 * byte drives the operator's terminal. cd_escape() keeps printable ASCII,
 * doubles the backslash and writes every other byte as \n, \r, \t or \xNN,
 * so the output is one line of printable ASCII that reads back unambiguously.
 * libconduit-p2p escapes what it stores from a peer with it (and exports it
 * as cp2p_escape()); the daemon uses it for anything else it prints.
 */
#ifndef CD_ESCAPE_H
#define CD_ESCAPE_H

#include <stddef.h>

/* Output bytes that always suffice for n input bytes (NUL included). */
#define CD_ESCAPED_LEN(n) (4 * (n) + 1)

/*
 * Escapes in[0..len) (NULs allowed) into out.
 * Out: out, NUL-terminated when cap > 0; an escape that does not fit whole
 *      is left out (and everything after it).
 * Returns: bytes written, excluding the NUL.
 */
size_t cd_escape(char *out, size_t cap, const void *in, size_t len);

/* cd_escape of a NUL-terminated string into a static per-thread buffer of
 * 1024 bytes (longer output is truncated); for log arguments. Valid until
 * the next call from the same thread. */
const char *cd_escape_str(const char *s);

#endif /* CD_ESCAPE_H */
