/*
 * cd_hostport.h - the one reader and writer of "host:port" addresses: peers
 * (connect), the HTTP API's listen address (http_listen), the default-port
 * completion of a peer address.
 *
 * Forms read:
 *   host            a name or an IPv4 address, no port
 *   host:port       exactly one colon
 *   [v6addr]        an IPv6 address in brackets, no port
 *   [v6addr]:port
 *   v6addr          two or more colons without brackets: an IPv6 address,
 *                   no port (a port needs the brackets)
 * The text is 1..255 characters without white space; the host is 1..247
 * characters (CD_HOSTPORT_HOST_MAX: room for "[", "]:65535" within 255)
 * and never holds '[' or ']'; a port is decimal digits only, 0..65535 (a caller that refuses 0
 * says so). Nothing is resolved here. No allocation; thread-safe.
 */
#ifndef CD_HOSTPORT_H
#define CD_HOSTPORT_H

#include <stddef.h>

#include "cd_err.h" /* CD_WARN_UNUSED */

#define CD_HOSTPORT_MAX      256 /* longest address text + NUL; also enough for any host */
#define CD_HOSTPORT_HOST_MAX (CD_HOSTPORT_MAX - 1 - 8) /* longest host: "[h]:65535" fits */

/*
 * Splits an address.
 * In:  s, NUL-terminated text (not kept).
 * Out: host, hostsz bytes (CD_HOSTPORT_MAX always suffices): the host,
 *      brackets removed; *port, the port, or -1 when the text has none.
 * Returns: 0, or -1 if s is not one of the forms above or the host does not
 *          fit hostsz (out values are then unspecified).
 */
int cd_hostport_parse(const char *s, char *host, size_t hostsz, int *port) CD_WARN_UNUSED;

/*
 * Writes "host:port", or "[host]:port" when host contains a colon (IPv6):
 * the form cd_hostport_parse reads back. Truncates like snprintf to len
 * bytes (NUL included).
 */
void cd_hostport_format(char *buf, size_t len, const char *host, unsigned port);

#endif /* CD_HOSTPORT_H */
