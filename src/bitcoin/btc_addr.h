/*
 * btc_addr.h - legacy addresses (base58check): P2PKH and P2SH, mapped to
 * their locking scripts, with the version byte checked against the network.
 *
 * Why it exists: wallets name a key by its address; the index keys outputs
 * by the hash of their locking script (sql/007_outputs.sql). A testnet
 * address given to a mainnet index must be an error, not a silent match on
 * the same hash160 (issue 14).
 * Version bytes: bitcoin-sv src/chainparams.cpp base58Prefixes
 * (PUBKEY_ADDRESS / SCRIPT_ADDRESS): main 0 / 5; testnet, regtest and stn
 * 111 / 196.
 */
#ifndef BTC_ADDR_H
#define BTC_ADDR_H

#include <stddef.h>
#include <stdint.h>

#include "btc_net.h"
#include "cd_err.h"

/* Longest locking script an address stands for (P2PKH). */
#define BTC_ADDR_SCRIPT_MAX 25

/*
 * Decodes base58 text (Bitcoin alphabet; leading '1's are zero bytes).
 * In:  s (NUL-terminated), cap: bytes available at out.
 * Returns: the decoded length, or -1 (a character outside the alphabet, or
 *          more than cap bytes).
 */
int btc_base58_decode(const char *s, uint8_t *out, size_t cap) CD_WARN_UNUSED;

/*
 * The locking script of a P2PKH or P2SH address of network `net`.
 * Out: script (BTC_ADDR_SCRIPT_MAX bytes), *len; why (>= 96 bytes) on error:
 *      "length", "not base58", "checksum", or "version byte V is not a P2PKH
 *      or P2SH address of <net>".
 * Returns: 0, or -1 with why filled.
 */
int btc_addr_script(const char *addr, const btc_net *net, uint8_t *script, size_t *len, char *why,
                    size_t why_len) CD_WARN_UNUSED;

#endif /* BTC_ADDR_H */
