/*
 * cd_escape.c - untrusted text made safe for logs, status files and JSON
 * (see cd_escape.h).
 */
#include "cd_escape.h"

#include <string.h>

size_t cd_escape(char *out, size_t cap, const void *in, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = in;
    size_t o = 0;
    if (cap == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char e[4];
        size_t k;
        unsigned char c = s[i];
        if (c == '\\') {
            e[0] = e[1] = '\\';
            k = 2;
        } else if (c >= 0x20 && c < 0x7f) {
            e[0] = (char)c;
            k = 1;
        } else if (c == '\n' || c == '\r' || c == '\t') {
            e[0] = '\\';
            e[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
            k = 2;
        } else {
            e[0] = '\\';
            e[1] = 'x';
            e[2] = hex[c >> 4];
            e[3] = hex[c & 15];
            k = 4;
        }
        if (o + k >= cap)
            break;
        memcpy(out + o, e, k);
        o += k;
    }
    out[o] = 0;
    return o;
}

const char *cd_escape_str(const char *s)
{
    static _Thread_local char buf[1024];
    cd_escape(buf, sizeof(buf), s ? s : "", s ? strlen(s) : 0);
    return buf;
}
