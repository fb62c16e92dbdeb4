"""secp256k1 ECDSA for the simulated node: key derivation, signing and
verification in pure Python (standard library only).

Written from the curve's public parameters (SEC 2), RFC 6979 (deterministic
nonces, HMAC-SHA256) and the encoding rules the BSV node enforces on
signatures and public keys (BIP 66 strict DER, low S, compressed or
uncompressed keys; the node's `src/script/interpreter.cpp`
IsValidSignatureEncoding / IsLowDERSignature / IsCompressedOrUncompressedPubKey).
Not constant time: this is test tooling, never use it for real funds.

Speed (2-core dev VM): public key / signature ~0.1-0.2 ms (k*G through a
precomputed 8-bit window table, built once per process in ~0.1 s), verify
~1.5 ms (u2*Q by a plain double-and-add in Jacobian coordinates).
"""
import hashlib
import hmac

P = 2**256 - 2**32 - 977
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
GX = 0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798
GY = 0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8
HALF_N = N // 2

# -- field / group arithmetic (Jacobian coordinates, a = 0) ---------------------

_INF = (0, 1, 0)


def _jdouble(p1):
    x, y, z = p1
    if z == 0 or y == 0:
        return _INF
    ysq = y * y % P
    s = 4 * x * ysq % P
    m = 3 * x * x % P
    nx = (m * m - 2 * s) % P
    ny = (m * (s - nx) - 8 * ysq * ysq) % P
    nz = 2 * y * z % P
    return (nx, ny, nz)


def _jadd(p1, p2):
    x1, y1, z1 = p1
    x2, y2, z2 = p2
    if z1 == 0:
        return p2
    if z2 == 0:
        return p1
    z1z1 = z1 * z1 % P
    z2z2 = z2 * z2 % P
    u1 = x1 * z2z2 % P
    u2 = x2 * z1z1 % P
    s1 = y1 * z2 * z2z2 % P
    s2 = y2 * z1 * z1z1 % P
    if u1 == u2:
        if s1 != s2:
            return _INF
        return _jdouble(p1)
    h = (u2 - u1) % P
    r = (s2 - s1) % P
    hh = h * h % P
    hhh = h * hh % P
    v = u1 * hh % P
    nx = (r * r - hhh - 2 * v) % P
    ny = (r * (v - nx) - s1 * hhh) % P
    nz = h * z1 * z2 % P
    return (nx, ny, nz)


def _jadd_affine(p1, x2, y2):
    """p1 (Jacobian) + (x2, y2) (affine)."""
    x1, y1, z1 = p1
    if z1 == 0:
        return (x2, y2, 1)
    z1z1 = z1 * z1 % P
    u2 = x2 * z1z1 % P
    s2 = y2 * z1 * z1z1 % P
    if x1 == u2:
        if y1 != s2:
            return _INF
        return _jdouble(p1)
    h = (u2 - x1) % P
    r = (s2 - y1) % P
    hh = h * h % P
    hhh = h * hh % P
    v = x1 * hh % P
    nx = (r * r - hhh - 2 * v) % P
    ny = (r * (v - nx) - y1 * hhh) % P
    nz = h * z1 % P
    return (nx, ny, nz)


def _to_affine(p1):
    x, y, z = p1
    if z == 0:
        return None
    zi = pow(z, -1, P)
    zi2 = zi * zi % P
    return (x * zi2 % P, y * zi2 * zi % P)


def _batch_affine(points):
    """Affine forms of many Jacobian points (none at infinity) with one
    field inversion (Montgomery's trick)."""
    acc = [1]
    for _, _, z in points:
        acc.append(acc[-1] * z % P)
    inv = pow(acc[-1], -1, P)
    out = [None] * len(points)
    for i in range(len(points) - 1, -1, -1):
        x, y, z = points[i]
        zi = inv * acc[i] % P
        inv = inv * z % P
        zi2 = zi * zi % P
        out[i] = (x * zi2 % P, y * zi2 * zi % P)
    return out


def _jmul(k, x, y):
    """k * (x, y) for an arbitrary affine point (double-and-add)."""
    acc = _INF
    for bit in bin(k)[2:]:
        acc = _jdouble(acc)
        if bit == "1":
            acc = _jadd_affine(acc, x, y)
    return acc


_G_TABLE = None     # _G_TABLE[i][j] = j * 256**i * G (affine), j = 1..255


def _g_table():
    global _G_TABLE
    if _G_TABLE is None:
        table = []
        base = (GX, GY, 1)
        for _ in range(32):
            row = [None]
            acc = _INF
            jac = []
            for _j in range(255):
                acc = _jadd(acc, base)
                jac.append(acc)
            row += _batch_affine(jac)
            table.append(row)
            base = _jdouble(jac[127])          # 256 * base = 2 * (128 * base)
        _G_TABLE = table
    return _G_TABLE


def _gmul(k):
    """k * G (Jacobian), through the window table."""
    t = _g_table()
    acc = _INF
    i = 0
    while k:
        j = k & 0xFF
        if j:
            x, y = t[i][j]
            acc = _jadd_affine(acc, x, y)
        k >>= 8
        i += 1
    return acc


# -- keys ------------------------------------------------------------------------

def pubkey_point(secret):
    """Affine (x, y) of secret * G."""
    if not 1 <= secret < N:
        raise ValueError("secret out of range")
    return _to_affine(_gmul(secret))


def encode_pubkey(pt, compressed=True):
    x, y = pt
    if compressed:
        return bytes((2 + (y & 1),)) + x.to_bytes(32, "big")
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


def pubkey_from_secret(secret, compressed=True):
    return encode_pubkey(pubkey_point(secret), compressed)


def decode_pubkey(b):
    """Affine point of a 33/65-byte SEC public key, or None if it is not a
    point on the curve (the node's CPubKey::Verify then fails)."""
    b = bytes(b)
    if len(b) == 33 and b[0] in (2, 3):
        x = int.from_bytes(b[1:], "big")
        if x >= P:
            return None
        y2 = (pow(x, 3, P) + 7) % P
        y = pow(y2, (P + 1) // 4, P)
        if y * y % P != y2:
            return None
        if (y & 1) != (b[0] & 1):
            y = P - y
        return (x, y)
    if len(b) == 65 and b[0] in (4, 6, 7):
        x = int.from_bytes(b[1:33], "big")
        y = int.from_bytes(b[33:], "big")
        if x >= P or y >= P or (y * y - x * x * x - 7) % P:
            return None
        if b[0] in (6, 7) and (y & 1) != (b[0] & 1):
            return None
        return (x, y)
    return None


def is_compressed_or_uncompressed_pubkey(b):
    """The node's STRICTENC public key format check (no curve check)."""
    if len(b) < 33:
        return False
    if b[0] == 0x04:
        return len(b) == 65
    if b[0] in (0x02, 0x03):
        return len(b) == 33
    return False


# -- DER -------------------------------------------------------------------------

def _der_int(v):
    b = v.to_bytes((v.bit_length() + 7) // 8 or 1, "big")
    if b[0] & 0x80:
        b = b"\x00" + b
    return b"\x02" + bytes((len(b),)) + b


def der_encode(r, s):
    body = _der_int(r) + _der_int(s)
    return b"\x30" + bytes((len(body),)) + body


def der_decode(sig):
    """(r, s) of a DER signature *without* the sighash byte, or None.
    Lax about padding (the node checks strictness separately)."""
    try:
        if len(sig) < 8 or sig[0] != 0x30:
            return None
        if sig[2] != 0x02:
            return None
        lr = sig[3]
        r = int.from_bytes(sig[4:4 + lr], "big")
        o = 4 + lr
        if sig[o] != 0x02:
            return None
        ls = sig[o + 1]
        s = int.from_bytes(sig[o + 2:o + 2 + ls], "big")
        if o + 2 + ls > len(sig):
            return None
        return r, s
    except IndexError:
        return None


def is_valid_signature_encoding(sig):
    """BIP 66 strict DER, for a signature *with* its trailing sighash byte."""
    n = len(sig)
    if n < 9 or n > 73:
        return False
    if sig[0] != 0x30 or sig[1] != n - 3:
        return False
    len_r = sig[3]
    if 5 + len_r >= n:
        return False
    len_s = sig[5 + len_r]
    if len_r + len_s + 7 != n:
        return False
    if sig[2] != 0x02 or len_r == 0 or sig[4] & 0x80:
        return False
    if len_r > 1 and sig[4] == 0 and not sig[5] & 0x80:
        return False
    if sig[len_r + 4] != 0x02 or len_s == 0 or sig[len_r + 6] & 0x80:
        return False
    if len_s > 1 and sig[len_r + 6] == 0 and not sig[len_r + 7] & 0x80:
        return False
    return True


def is_low_s(sig):
    """Low-S check for a strictly encoded signature with its sighash byte."""
    if not is_valid_signature_encoding(sig):
        return False
    rs = der_decode(sig[:-1])
    return rs is not None and 1 <= rs[1] <= HALF_N


# -- sign / verify ---------------------------------------------------------------

def _rfc6979_nonces(secret, digest):
    """RFC 6979 section 3.2 candidate nonces (HMAC-SHA256, qlen = 256)."""
    x = secret.to_bytes(32, "big")
    h1 = (int.from_bytes(digest, "big") % N).to_bytes(32, "big")
    v = b"\x01" * 32
    k = b"\x00" * 32
    k = hmac.new(k, v + b"\x00" + x + h1, hashlib.sha256).digest()
    v = hmac.new(k, v, hashlib.sha256).digest()
    k = hmac.new(k, v + b"\x01" + x + h1, hashlib.sha256).digest()
    v = hmac.new(k, v, hashlib.sha256).digest()
    while True:
        v = hmac.new(k, v, hashlib.sha256).digest()
        cand = int.from_bytes(v, "big")
        if 1 <= cand < N:
            yield cand
        k = hmac.new(k, v + b"\x00", hashlib.sha256).digest()
        v = hmac.new(k, v, hashlib.sha256).digest()


def sign(secret, digest):
    """(r, s) over a 32-byte digest, deterministic nonce, low S (as
    libsecp256k1 produces for the node's wallet)."""
    z = int.from_bytes(digest, "big")
    for k in _rfc6979_nonces(secret, digest):
        x, _ = _to_affine(_gmul(k))
        r = x % N
        if r == 0:
            continue
        s = pow(k, -1, N) * (z + r * secret) % N
        if s == 0:
            continue
        if s > HALF_N:
            s = N - s
        return r, s


def sign_der(secret, digest):
    return der_encode(*sign(secret, digest))


def verify(pubkey_bytes, digest, r, s):
    """True if (r, s) is a valid signature of digest by the key.  High-S
    signatures verify (the node normalises before verifying; LOW_S is a
    separate script flag)."""
    pt = decode_pubkey(pubkey_bytes)
    if pt is None or not (1 <= r < N and 1 <= s < N):
        return False
    z = int.from_bytes(digest, "big")
    w = pow(s, -1, N)
    u1 = z * w % N
    u2 = r * w % N
    acc = _jadd(_gmul(u1), _jmul(u2, *pt)) if u1 else _jmul(u2, *pt)
    aff = _to_affine(acc)
    return aff is not None and aff[0] % N == r


def verify_der(pubkey_bytes, digest, der):
    rs = der_decode(der)
    return rs is not None and verify(pubkey_bytes, digest, *rs)
