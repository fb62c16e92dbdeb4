/*
 * btc_addr.c - base58check addresses -> locking scripts (see btc_addr.h).
 */
#include "btc_addr.h"

#include "btc_sha256.h"

#include <stdio.h>
#include <string.h>

static const char alphabet[] = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

int btc_base58_decode(const char *s, uint8_t *out, size_t cap)
{
    /* big-endian base-256 accumulator in out[cap - n .. cap) */
    size_t n = 0, zeros = 0;
    const char *p = s;
    while (*p == '1') {
        zeros++;
        p++;
    }
    for (; *p; p++) {
        const char *c = strchr(alphabet, *p);
        if (!c || *p == '\0')
            return -1;
        unsigned carry = (unsigned)(c - alphabet);
        for (size_t i = 0; i < n; i++) {
            carry += 58u * out[cap - 1 - i];
            out[cap - 1 - i] = (uint8_t)carry;
            carry >>= 8;
        }
        while (carry) {
            if (n == cap)
                return -1;
            out[cap - 1 - n++] = (uint8_t)carry;
            carry >>= 8;
        }
    }
    if (n + zeros > cap)
        return -1;
    memmove(out + zeros, out + cap - n, n);
    memset(out, 0, zeros);
    return (int)(n + zeros);
}

int btc_addr_script(const char *addr, const btc_net *net, uint8_t *script, size_t *len, char *why,
                    size_t why_len)
{
    uint8_t d[64]; /* 35 characters are at most 35 bytes (leading '1's) */
    size_t alen = strlen(addr);
    if (alen < 26 || alen > 35) {
        snprintf(why, why_len, "length");
        return -1;
    }
    int n = btc_base58_decode(addr, d, sizeof(d));
    if (n < 0) {
        snprintf(why, why_len, "not base58");
        return -1;
    }
    uint8_t h[32];
    btc_sha256d(h, d, 21);
    if (n != 25 || memcmp(h, d + 21, 4) != 0) {
        snprintf(why, why_len, "checksum");
        return -1;
    }
    int main_net = net->id == BTC_NET_MAIN;
    uint8_t pkh = main_net ? 0 : 111, sh = main_net ? 5 : 196;
    if (d[0] == pkh) {
        static const uint8_t pre[3] = {0x76, 0xa9, 0x14}, post[2] = {0x88, 0xac};
        memcpy(script, pre, 3);
        memcpy(script + 3, d + 1, 20);
        memcpy(script + 23, post, 2);
        *len = 25;
        return 0;
    }
    if (d[0] == sh) {
        script[0] = 0xa9;
        script[1] = 0x14;
        memcpy(script + 2, d + 1, 20);
        script[22] = 0x87;
        *len = 23;
        return 0;
    }
    snprintf(why, why_len, "version byte %u is not a P2PKH or P2SH address of %s", d[0], net->name);
    return -1;
}
