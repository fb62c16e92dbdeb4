/*
 * fuzz_p2p_decoder.c - libFuzzer target for the libconduit-p2p message decoder.
 *
 * The input is treated as bytes received from a hostile peer: it is framed
 * with cp2p_msghdr_decode (basic and extmsg headers) message after message,
 * and every payload - and the raw input itself - goes through every payload
 * decoder (version, protoconf, inv/getdata/notfound, headers, getheaders,
 * reject, addr, ping/pong, sendcmpct, mempool, authch) and the transaction walker used to cut
 * block chunks. Decoders must never read out of bounds, never loop without
 * progress, and must report sizes consistent with the input.
 *
 * Built only with -Dfuzz=true and clang (scripts/fuzz.sh).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "btc_preproc.h"
#include "conduit_p2p.h"
#include "cp2p_codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Peer-chosen text comes out escaped: one line of printable ASCII (F4). */
static void check_printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            abort();
}

static void all_decoders(const uint8_t *p, size_t n)
{
    static cp2p_inv inv[64];
    static uint8_t hdrs[CP2P_MAX_HEADERS_PER_MSG * 80];
    static uint8_t loc[64][32];
    static cp2p_addr addr[64];
    cp2p_version v;
    cp2p_reject r;
    uint64_t u, nf;
    uint32_t mr, ver;
    size_t cnt;
    int ann;
    uint8_t stop[32];

    if (cp2p_dec_version(p, n, &v) == CP2P_OK)
        check_printable(v.user_agent);
    if (cp2p_dec_protoconf(p, n, &nf, &mr) == CP2P_OK && nf == 0)
        abort();
    (void)cp2p_dec_u64(p, n, &u);
    if (cp2p_dec_inv(p, n, inv, 64, &cnt) == CP2P_OK && cnt * 36 > n)
        abort();
    if (cp2p_dec_headers(p, n, hdrs, CP2P_MAX_HEADERS_PER_MSG, &cnt) == CP2P_OK &&
        (cnt > CP2P_MAX_HEADERS_PER_MSG || cnt * 81 > n))
        abort();
    if (cp2p_dec_getheaders(p, n, &ver, loc, 64, &cnt, stop) == CP2P_OK && cnt * 32 + 36 > n)
        abort();
    if (cp2p_dec_reject(p, n, &r) == CP2P_OK &&
        (strlen(r.message) >= sizeof(r.message) || strlen(r.reason) >= sizeof(r.reason)))
        abort();
    check_printable(r.message);
    check_printable(r.reason);
    if (cp2p_dec_addr(p, n, addr, 64, &cnt) == CP2P_OK && cnt * 30 > n)
        abort();
    (void)cp2p_dec_sendcmpct(p, n, &ann, &u);
    int64_t age;
    (void)cp2p_dec_mempool(p, n, &age);
    (void)cp2p_dec_authch(p, n, &ver, stop);
    int64_t t = btc_tx_skip(p, n);
    if (t > (int64_t)n)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t pos = 0;
    all_decoders(data, size);
    while (pos < size) {
        cp2p_msghdr h;
        int k = cp2p_msghdr_decode(data + pos, size - pos, &h);
        if (k <= 0)
            break;
        if ((size_t)k != h.hdr_len || (k != 24 && k != 44))
            abort();
        pos += (size_t)k;
        size_t len = h.len > size - pos ? size - pos : (size_t)h.len;
        all_decoders(data + pos, len);
        pos += len;
    }
    return 0;
}
