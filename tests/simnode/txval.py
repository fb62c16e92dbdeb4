"""Transactions as the node validates them: parsing, the BSV signature hash
and script checks for P2PKH / P2PK inputs.

What the real node does and where (bitcoin-sv/bitcoin-sv; facts and rules
only, no code copied):

* Signature hash (`src/script/interpreter.cpp`, SignatureHash): with
  SIGHASH_FORKID (0x40) set, the BIP143-style digest: sha256d of nVersion |
  hashPrevouts | hashSequence | outpoint | scriptCode (var_str) | amount |
  nSequence | hashOutputs | nLockTime | the 32-bit sighash type; base type
  = type & 0x1f, ANYONECANPAY = 0x80 blanks hashPrevouts (and
  hashSequence), NONE/SINGLE blank hashSequence, SINGLE commits to the
  output of the same index only (zero hash if there is none).  Checked
  against the node's own vectors (`src/test/data/sighash.json`) and a real
  regtest chain in tests/functional/test_simnode.py.  SIGHASH_CHRONICLE
  (0x20, the original digest after the Chronicle upgrade) is not modelled.
* Script flags for mempool acceptance before Genesis (`src/policy/policy.h`
  STANDARD_SCRIPT_VERIFY_FLAGS; `src/script/standard.h`
  MANDATORY_SCRIPT_VERIFY_FLAGS = P2SH | STRICTENC | SIGHASH_FORKID | LOW_S |
  NULLFAIL).  A failure under the standard flags is re-checked under the
  mandatory ones (`src/validation.cpp`, CheckInputs): passing then gives
  REJECT_NONSTANDARD "non-mandatory-script-verify-flag (<error>)" (no ban
  score), failing REJECT_INVALID "mandatory-script-verify-flag-failed
  (<error>)" with ban score 100.  <error> is the first check's
  ScriptErrorString (`src/script/script_error.cpp`).
* CHECKSIG (`src/script/interpreter.cpp`): signature encoding (strict DER,
  low S, defined hash type, FORKID required), public key encoding
  (compressed / uncompressed), then the ECDSA check; a failed check with a
  non-empty signature is SCRIPT_ERR_SIG_NULLFAIL.  Then VerifyScript: false
  top of stack -> EVAL_FALSE, CLEANSTACK (exactly one item left).

What the simulator evaluates: inputs spending P2PKH (`OP_DUP OP_HASH160
<20> OP_EQUALVERIFY OP_CHECKSIG`) and P2PK (`<33|65 bytes> OP_CHECKSIG`)
outputs whose scriptSig is push-only (MINIMALDATA enforced on the pushes).
Everything else (bare multisig, P2SH redeem scripts, OP_RETURN outputs,
custom scripts, non-push scriptSigs) is *not evaluated* and accepted, as a
regtest node (which does not require standard txs) would accept it if the
script were right.
"""
import hashlib
import struct

from . import ecdsa
from .protocol import ParseError, hash160, read_compact, ser_compact, sha256d

# -- script flags (names as in the node; values are this module's own) --------

P2SH = 1 << 0
STRICTENC = 1 << 1
DERSIG = 1 << 2
LOW_S = 1 << 3
NULLDUMMY = 1 << 4
MINIMALDATA = 1 << 6
DISCOURAGE_UPGRADABLE_NOPS = 1 << 7
CLEANSTACK = 1 << 8
CHECKLOCKTIMEVERIFY = 1 << 9
CHECKSEQUENCEVERIFY = 1 << 10
NULLFAIL = 1 << 14
ENABLE_SIGHASH_FORKID = 1 << 16

MANDATORY_FLAGS = P2SH | STRICTENC | ENABLE_SIGHASH_FORKID | LOW_S | NULLFAIL
STANDARD_FLAGS = (MANDATORY_FLAGS | DERSIG | MINIMALDATA | NULLDUMMY |
                  DISCOURAGE_UPGRADABLE_NOPS | CLEANSTACK | NULLFAIL |
                  CHECKLOCKTIMEVERIFY | CHECKSEQUENCEVERIFY | LOW_S)
STANDARD_NOT_MANDATORY = STANDARD_FLAGS & ~MANDATORY_FLAGS

SIGHASH_ALL = 0x01
SIGHASH_NONE = 0x02
SIGHASH_SINGLE = 0x03
SIGHASH_FORKID = 0x40
SIGHASH_ANYONECANPAY = 0x80
SIGHASH_ALL_FORKID = SIGHASH_ALL | SIGHASH_FORKID       # 0x41, what wallets use

# ScriptErrorString texts (src/script/script_error.cpp)
ERR_EVAL_FALSE = ("Script evaluated without error but finished with a "
                  "false/empty top stack element")
ERR_EQUALVERIFY = "Script failed an OP_EQUALVERIFY operation"
ERR_BAD_OPCODE = "Opcode missing or not understood"
ERR_INVALID_STACK_OPERATION = "Operation not valid with the current stack size"
ERR_SIG_HASHTYPE = "Signature hash type missing or not understood"
ERR_SIG_DER = "Non-canonical DER signature"
ERR_MINIMALDATA = "Data push larger than necessary"
ERR_SIG_HIGH_S = "Non-canonical signature: S value is unnecessarily high"
ERR_SIG_NULLFAIL = "Signature must be zero for failed CHECK(MULTI)SIG operation"
ERR_PUBKEYTYPE = "Public key is neither compressed or uncompressed"
ERR_CLEANSTACK = "Script did not clean its stack"
ERR_ILLEGAL_FORKID = "Illegal use of SIGHASH_FORKID"
ERR_MUST_USE_FORKID = "Signature must use SIGHASH_FORKID"

MAX_MONEY = 21_000_000 * 100_000_000
SEQUENCE_FINAL = 0xFFFFFFFF
LOCKTIME_THRESHOLD = 500_000_000
SEQUENCE_LOCKTIME_DISABLE_FLAG = 1 << 31
SEQUENCE_LOCKTIME_TYPE_FLAG = 1 << 22
SEQUENCE_LOCKTIME_MASK = 0x0000FFFF
SEQUENCE_LOCKTIME_GRANULARITY = 9


# -- transactions ---------------------------------------------------------------

class TxIn:
    __slots__ = ("prev", "index", "script_sig", "sequence")

    def __init__(self, prev, index, script_sig, sequence):
        self.prev = prev
        self.index = index
        self.script_sig = script_sig
        self.sequence = sequence

    @property
    def outpoint(self):
        return (self.prev, self.index)


class Tx:
    """A parsed transaction (zero inputs or outputs allowed: the node parses
    those and rejects them in validation)."""
    __slots__ = ("version", "vin", "vout", "locktime", "raw", "txid", "_pre")

    def __init__(self, version, vin, vout, locktime, raw=None):
        self.version = version
        self.vin = vin
        self.vout = vout
        self.locktime = locktime
        self.raw = raw if raw is not None else self.serialize()
        self.txid = sha256d(self.raw)
        self._pre = None

    @classmethod
    def parse(cls, raw):
        raw = bytes(raw)
        try:
            if len(raw) < 10:
                raise ParseError("short tx")
            version = struct.unpack_from("<i", raw, 0)[0]
            off = 4
            n, off = read_compact(raw, off)
            vin = []
            for _ in range(n):
                if off + 36 > len(raw):
                    raise ParseError("short input")
                prev = raw[off:off + 32]
                idx = struct.unpack_from("<I", raw, off + 32)[0]
                ln, off = read_compact(raw, off + 36)
                if off + ln + 4 > len(raw):
                    raise ParseError("short input")
                ss = raw[off:off + ln]
                seq = struct.unpack_from("<I", raw, off + ln)[0]
                off += ln + 4
                vin.append(TxIn(prev, idx, ss, seq))
            n, off = read_compact(raw, off)
            vout = []
            for _ in range(n):
                if off + 8 > len(raw):
                    raise ParseError("short output")
                val = struct.unpack_from("<q", raw, off)[0]
                ln, off = read_compact(raw, off + 8)
                if off + ln > len(raw):
                    raise ParseError("short output script")
                vout.append((val, raw[off:off + ln]))
                off += ln
            if off + 4 != len(raw):
                raise ParseError("bad tx length")
            locktime = struct.unpack_from("<I", raw, off)[0]
        except struct.error as e:
            raise ParseError(str(e))
        return cls(version, vin, vout, locktime, raw)

    def serialize(self):
        parts = [struct.pack("<i", self.version), ser_compact(len(self.vin))]
        for i in self.vin:
            parts += [i.prev, struct.pack("<I", i.index), ser_compact(len(i.script_sig)),
                      i.script_sig, struct.pack("<I", i.sequence)]
        parts.append(ser_compact(len(self.vout)))
        for v, sc in self.vout:
            parts += [struct.pack("<q", v), ser_compact(len(sc)), sc]
        parts.append(struct.pack("<I", self.locktime))
        return b"".join(parts)

    @property
    def size(self):
        return len(self.raw)

    def is_coinbase(self):
        return len(self.vin) == 1 and self.vin[0].prev == b"\0" * 32 and \
            self.vin[0].index == 0xFFFFFFFF

    def value_out(self):
        return sum(v for v, _ in self.vout)

    def precomputed(self):
        """hashPrevouts, hashSequence, hashOutputs (PrecomputedTransactionData)."""
        if self._pre is None:
            self._pre = (
                sha256d(b"".join(i.prev + struct.pack("<I", i.index) for i in self.vin)),
                sha256d(b"".join(struct.pack("<I", i.sequence) for i in self.vin)),
                sha256d(b"".join(_ser_out(v, sc) for v, sc in self.vout)))
        return self._pre


def _ser_out(value, script):
    return struct.pack("<q", value) + ser_compact(len(script)) + script


def sighash(tx, n_in, script_code, amount, hashtype=SIGHASH_ALL_FORKID):
    """The FORKID signature hash (32 bytes, the digest ECDSA signs)."""
    hashtype &= 0xFFFFFFFF
    base = hashtype & 0x1F
    acp = hashtype & SIGHASH_ANYONECANPAY
    zero = b"\0" * 32
    hp, hs, ho = tx.precomputed()
    if acp:
        hp = zero
    if acp or base in (SIGHASH_SINGLE, SIGHASH_NONE):
        hs = zero
    if base == SIGHASH_SINGLE:
        ho = sha256d(_ser_out(*tx.vout[n_in])) if n_in < len(tx.vout) else zero
    elif base == SIGHASH_NONE:
        ho = zero
    txin = tx.vin[n_in]
    pre = b"".join((
        struct.pack("<i", tx.version), hp, hs,
        txin.prev, struct.pack("<I", txin.index),
        ser_compact(len(script_code)), script_code,
        struct.pack("<q", amount), struct.pack("<I", txin.sequence),
        ho, struct.pack("<I", tx.locktime), struct.pack("<I", hashtype)))
    return sha256d(pre)


# -- scripts -------------------------------------------------------------------

def is_p2pkh(script):
    return len(script) == 25 and script[:3] == b"\x76\xa9\x14" and script[23:] == b"\x88\xac"


def is_p2pk(script):
    return (len(script) == 35 and script[0] == 33 and script[-1] == 0xAC) or \
        (len(script) == 67 and script[0] == 65 and script[-1] == 0xAC)


def p2pk_key(script):
    return script[1:-1]


def parse_pushes(script):
    """[(opcode, data)] for a push-only script; None if it has another
    opcode; raises ScriptError(BAD_OPCODE) on a truncated push."""
    out = []
    i = 0
    n = len(script)
    while i < n:
        op = script[i]
        i += 1
        if op == 0:
            out.append((op, b""))
        elif op < 0x4C:
            if i + op > n:
                raise ScriptError(ERR_BAD_OPCODE)
            out.append((op, script[i:i + op]))
            i += op
        elif op in (0x4C, 0x4D, 0x4E):
            w = {0x4C: 1, 0x4D: 2, 0x4E: 4}[op]
            if i + w > n:
                raise ScriptError(ERR_BAD_OPCODE)
            ln = int.from_bytes(script[i:i + w], "little")
            i += w
            if i + ln > n:
                raise ScriptError(ERR_BAD_OPCODE)
            out.append((op, script[i:i + ln]))
            i += ln
        elif op == 0x4F:
            out.append((op, b"\x81"))
        elif 0x51 <= op <= 0x60:
            out.append((op, bytes((op - 0x50,))))
        else:
            return None
    return out


def _minimal_push(op, data):
    """The node's CheckMinimalPush."""
    n = len(data)
    if n == 0:
        return op == 0
    if n == 1 and 1 <= data[0] <= 16:
        return op == 0x50 + data[0]
    if n == 1 and data[0] == 0x81:
        return op == 0x4F
    if n <= 75:
        return op == n
    if n <= 255:
        return op == 0x4C
    if n <= 65535:
        return op == 0x4D
    return True


def _cast_to_bool(v):
    for i, b in enumerate(v):
        if b:
            return not (i == len(v) - 1 and b == 0x80)
    return False


class ScriptError(Exception):
    pass


def _check_sig_encoding(sig, flags):
    if not sig:
        return
    if flags & (DERSIG | LOW_S | STRICTENC) and not ecdsa.is_valid_signature_encoding(sig):
        raise ScriptError(ERR_SIG_DER)
    if flags & LOW_S and not ecdsa.is_low_s(sig):
        raise ScriptError(ERR_SIG_HIGH_S)
    if flags & STRICTENC:
        base = sig[-1] & ~(SIGHASH_ANYONECANPAY | SIGHASH_FORKID) & 0xFF
        if base < SIGHASH_ALL or base > SIGHASH_SINGLE:
            raise ScriptError(ERR_SIG_HASHTYPE)
        uses_forkid = bool(sig[-1] & SIGHASH_FORKID)
        enabled = bool(flags & ENABLE_SIGHASH_FORKID)
        if not enabled and uses_forkid:
            raise ScriptError(ERR_ILLEGAL_FORKID)
        if enabled and not uses_forkid:
            raise ScriptError(ERR_MUST_USE_FORKID)


def _checksig(tx, n_in, script_code, amount, sig, pub, flags):
    _check_sig_encoding(sig, flags)
    if flags & STRICTENC and not ecdsa.is_compressed_or_uncompressed_pubkey(pub):
        raise ScriptError(ERR_PUBKEYTYPE)
    ok = False
    if sig and sig[-1] & SIGHASH_FORKID and flags & ENABLE_SIGHASH_FORKID:
        digest = sighash(tx, n_in, script_code, amount, sig[-1])
        ok = ecdsa.verify_der(pub, digest, sig[:-1])
    # (a non-FORKID signature cannot pass STRICTENC + FORKID; not modelled further)
    if not ok and flags & NULLFAIL and sig:
        raise ScriptError(ERR_SIG_NULLFAIL)
    return ok


def eval_input(tx, n_in, prev_script, amount, flags):
    """Run one input.  Returns None when the scripts are not evaluated by
    the simulator (see the module docstring), else raises ScriptError or
    returns True."""
    if is_p2pkh(prev_script):
        kind = "p2pkh"
    elif is_p2pk(prev_script):
        kind = "p2pk"
    else:
        return None
    pushes = parse_pushes(tx.vin[n_in].script_sig)
    if pushes is None:
        return None
    stack = []
    for op, data in pushes:
        if flags & MINIMALDATA and not _minimal_push(op, data):
            raise ScriptError(ERR_MINIMALDATA)
        stack.append(data)
    if kind == "p2pkh":
        if not stack:
            raise ScriptError(ERR_INVALID_STACK_OPERATION)       # OP_DUP
        top = stack[-1]
        stack.append(hash160(top))                              # OP_DUP OP_HASH160
        stack.append(prev_script[3:23])
        a = stack.pop()
        b = stack.pop()
        if a != b:
            raise ScriptError(ERR_EQUALVERIFY)
    else:
        stack.append(p2pk_key(prev_script))
    if len(stack) < 2:
        raise ScriptError(ERR_INVALID_STACK_OPERATION)           # OP_CHECKSIG
    pub = stack.pop()
    sig = stack.pop()
    ok = _checksig(tx, n_in, prev_script, amount, sig, pub, flags)
    stack.append(b"\x01" if ok else b"")
    if not stack or not _cast_to_bool(stack[-1]):
        raise ScriptError(ERR_EVAL_FALSE)
    if flags & CLEANSTACK and flags & P2SH and len(stack) != 1:
        raise ScriptError(ERR_CLEANSTACK)
    return True


def check_scripts(tx, coins, flags=STANDARD_FLAGS):
    """CheckInputs' script part.  coins: [(value, script)] per input.
    Returns None if every input passes (or is not evaluated), else
    (reject code, reason, ban score)."""
    for i, (amount, script) in enumerate(coins):
        try:
            eval_input(tx, i, script, amount, flags)
        except ScriptError as e:
            first = str(e)
            if flags & STANDARD_NOT_MANDATORY:
                try:
                    eval_input(tx, i, script, amount, flags & ~STANDARD_NOT_MANDATORY)
                    return (0x40, "non-mandatory-script-verify-flag (%s)" % first, 0)
                except ScriptError:
                    pass
            return (0x10, "mandatory-script-verify-flag-failed (%s)" % first, 100)
    return None


# -- signing ------------------------------------------------------------------

def push(data):
    n = len(data)
    if n < 0x4C:
        return bytes((n,)) + data
    if n <= 0xFF:
        return b"\x4c" + bytes((n,)) + data
    if n <= 0xFFFF:
        return b"\x4d" + struct.pack("<H", n) + data
    return b"\x4e" + struct.pack("<I", n) + data


def sign_tx(version, inputs, outputs, locktime, keyfor, hashtype=SIGHASH_ALL_FORKID,
            corrupt=()):
    """Build and sign a tx.  inputs: [(prev, index, value, script, sequence)];
    keyfor(script) -> (secret, pubkey bytes) or None (input left with an
    empty scriptSig).  `corrupt`: input indexes whose signature is made over
    a wrong digest (a valid-looking signature that fails verification).
    Returns the raw tx."""
    vin = [TxIn(p, i, b"", seq) for p, i, _, _, seq in inputs]
    tx = Tx(version, vin, list(outputs), locktime)
    sigs = []
    for n, (_, _, value, script, _) in enumerate(inputs):
        k = keyfor(script)
        if k is None:
            sigs.append(b"")
            continue
        secret, pub = k
        digest = sighash(tx, n, script, value, hashtype)
        if n in corrupt:
            digest = hashlib.sha256(b"not the sighash" + digest).digest()
        sig = ecdsa.sign_der(secret, digest) + bytes((hashtype & 0xFF,))
        if is_p2pkh(script):
            sigs.append(push(sig) + push(pub))
        else:
            sigs.append(push(sig))
    for n, ss in enumerate(sigs):
        vin[n].script_sig = ss
    return Tx(version, vin, list(outputs), locktime).raw


# -- lock times (src/validation.cpp IsFinalTx, CalculateSequenceLocks) ---------

def is_final(tx, height, cutoff_time):
    """IsFinalTx: nLockTime 0, or below the height (< 500,000,000) / time
    cutoff, or every input's nSequence final."""
    if tx.locktime == 0:
        return True
    limit = height if tx.locktime < LOCKTIME_THRESHOLD else cutoff_time
    if tx.locktime < limit:
        return True
    return all(i.sequence == SEQUENCE_FINAL for i in tx.vin)


def sequence_lock_pair(tx, prev_heights, mtp_at):
    """CalculateSequenceLocks (BIP 68, only for version >= 2): returns
    (min height, min time); -1 = no constraint.  mtp_at(h) is the median
    time past of the block at height h."""
    min_h, min_t = -1, -1
    if (tx.version & 0xFFFFFFFF) < 2:
        return min_h, min_t
    for i, txin in enumerate(tx.vin):
        if txin.sequence & SEQUENCE_LOCKTIME_DISABLE_FLAG:
            continue
        h = prev_heights[i]
        if txin.sequence & SEQUENCE_LOCKTIME_TYPE_FLAG:
            t = mtp_at(max(h - 1, 0))
            min_t = max(min_t, t + ((txin.sequence & SEQUENCE_LOCKTIME_MASK)
                                    << SEQUENCE_LOCKTIME_GRANULARITY) - 1)
        else:
            min_h = max(min_h, h + (txin.sequence & SEQUENCE_LOCKTIME_MASK) - 1)
    return min_h, min_t
