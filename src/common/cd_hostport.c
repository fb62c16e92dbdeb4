/*
 * cd_hostport.c - "host:port" addresses, read and written in one place
 * (see cd_hostport.h): the configuration's checks of connect and
 * http_listen, the default port of a peer, the HTTP API's bind address.
 */
#include "cd_hostport.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* Decimal digits only, 0..65535. Returns the value or -1. */
static int parse_port(const char *p)
{
    long v = 0;
    if (*p == '\0')
        return -1;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
        if (v > 65535)
            return -1;
    }
    return (int)v;
}

/* A host never holds a bracket (brackets only delimit an IPv6 host) and is
 * at most CD_HOSTPORT_HOST_MAX characters, so that any host that parses
 * survives cd_hostport_format ("[host]:65535") -> parse. Both found by
 * fuzz/fuzz_config: "{::1]" became "[{::1]]:18444", and a 250-character
 * bare IPv6 text became 258 characters, over the limit. */
static int copy_host(char *host, size_t hostsz, const char *from, size_t n)
{
    if (n == 0 || n > CD_HOSTPORT_HOST_MAX || n >= hostsz || memchr(from, '[', n) ||
        memchr(from, ']', n))
        return -1;
    memcpy(host, from, n);
    host[n] = '\0';
    return 0;
}

int cd_hostport_parse(const char *s, char *host, size_t hostsz, int *port)
{
    size_t len = strlen(s);
    *port = -1;
    if (len == 0 || len >= CD_HOSTPORT_MAX)
        return -1;
    for (const char *p = s; *p; p++)
        if (isspace((unsigned char)*p))
            return -1;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || copy_host(host, hostsz, s + 1, (size_t)(close - s - 1)) != 0)
            return -1;
        if (close[1] == '\0')
            return 0;
        if (close[1] != ':')
            return -1;
        return (*port = parse_port(close + 2)) < 0 ? -1 : 0;
    }
    const char *c = strchr(s, ':');
    if (!c || strchr(c + 1, ':'))
        return copy_host(host, hostsz, s, len); /* no colon, or a bare IPv6 address */
    if (copy_host(host, hostsz, s, (size_t)(c - s)) != 0)
        return -1;
    return (*port = parse_port(c + 1)) < 0 ? -1 : 0;
}

void cd_hostport_format(char *buf, size_t len, const char *host, unsigned port)
{
    snprintf(buf, len, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
}
