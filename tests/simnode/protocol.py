"""Wire-format primitives of the BSV p2p protocol (node side).

Written from the protocol reference (../shared/reference/bsv-p2p.md); standard
library only.  Hashes are kept in *internal* byte order (as on the wire)
everywhere; `hexh()` / `unhexh()` convert to and from display hex.
"""
import hashlib
import struct

# --------------------------------------------------------------------------
# Network parameters (bsv-p2p.md §1)

NETWORKS = {
    "mainnet": {
        "magic": bytes.fromhex("e3e1f3e8"),
        "port": 8333,
        "genesis_header": bytes.fromhex(
            "01000000" + "00" * 32 +
            "3ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a"
            "29ab5f49" "ffff001d" "1dac2b7c"),
    },
    "testnet": {
        "magic": bytes.fromhex("f4e5f3f4"),
        "port": 18333,
        "genesis_header": bytes.fromhex(
            "01000000" + "00" * 32 +
            "3ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a"
            "dae5494d" "ffff001d" "1aa4ae18"),
    },
    "regtest": {
        "magic": bytes.fromhex("dab5bffa"),
        "port": 18444,
        "genesis_header": bytes.fromhex(
            "01000000" + "00" * 32 +
            "3ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a"
            "dae5494d" "ffff7f20" "02000000"),
    },
    "stn": {
        "magic": bytes.fromhex("fbcec4f9"),
        "port": 9333,
        "genesis_header": bytes.fromhex(
            "01000000" + "00" * 32 +
            "3ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a"
            "dae5494d" "ffff001d" "1aa4ae18"),
    },
}

# The genesis coinbase (identical on all four networks).
GENESIS_COINBASE = bytes.fromhex(
    "01000000010000000000000000000000000000000000000000000000000000000000000000"
    "ffffffff4d04ffff001d0104455468652054696d65732030332f4a616e2f32303039204368"
    "616e63656c6c6f72206f6e206272696e6b206f66207365636f6e64206261696c6f757420"
    "666f722062616e6b73ffffffff0100f2052a01000000434104678afdb0fe5548271967f1a6"
    "7130b7105cd6a828e03909a67962e0ea1f61deb649f6bc3f4cef38c4f35504e51ec112de5c"
    "384df7ba0b8d578a4c702b6bf11d5fac00000000")

PROTOCOL_VERSION = 70016
MIN_PEER_PROTO_VERSION = 31800
NODE_SERVICES = 0x21          # NODE_NETWORK | NODE_BITCOIN_CASH
NODE_USER_AGENT = "/Bitcoin SV:1.2.2(simnode)/"

MSG_TX = 1
MSG_BLOCK = 2
MSG_FILTERED_BLOCK = 3
MSG_CMPCT_BLOCK = 4

MAX_HEADERS_RESULTS = 2000
MAX_BLOCKS_TO_ANNOUNCE = 8
DEFAULT_MAX_RECV_PAYLOAD = 2 * 1024 * 1024       # 2 MiB
MAX_PROTOCONF_PAYLOAD = 1024 * 1024
MAX_TX_PAYLOAD = 1_000_000_000
BLOCK_LIKE = {"block", "cmpctblock", "blocktxn", "hdrsen"}
STREAM_POLICIES = b"BlockPriority,Default"

REJECT_MALFORMED = 0x01
REJECT_INVALID = 0x10
REJECT_OBSOLETE = 0x11
REJECT_DUPLICATE = 0x12

EMPTY_CHECKSUM = bytes.fromhex("5df6e0e2")
HEADER_LEN = 24
EXT_HEADER_LEN = 44

# --------------------------------------------------------------------------
# Hashing


def sha256d(b):
    return hashlib.sha256(hashlib.sha256(b).digest()).digest()


def hash160(b):
    return hashlib.new("ripemd160", hashlib.sha256(b).digest()).digest()


def hexh(h):
    """internal-order hash -> display hex"""
    return h[::-1].hex()


def unhexh(s):
    """display hex -> internal-order hash"""
    return bytes.fromhex(s)[::-1]


def bits_to_target(bits):
    exp = bits >> 24
    mant = bits & 0x007FFFFF
    if bits & 0x00800000:
        return -1               # negative target: invalid
    if exp <= 3:
        return mant >> (8 * (3 - exp))
    return mant << (8 * (exp - 3))


REGTEST_BITS = 0x207FFFFF
REGTEST_TARGET = bits_to_target(REGTEST_BITS)


def check_pow(header):
    bits = struct.unpack_from("<I", header, 72)[0]
    target = bits_to_target(bits)
    if target <= 0:
        return False
    return int.from_bytes(sha256d(header), "little") <= target


def merkle_root(txids):
    """txids: list of 32-byte internal-order hashes.  Returns 32 bytes."""
    level = list(txids)
    if not level:
        return b"\0" * 32
    sha = hashlib.sha256
    while len(level) > 1:
        if len(level) & 1:
            level.append(level[-1])
        level = [sha(sha(level[i] + level[i + 1]).digest()).digest()
                 for i in range(0, len(level), 2)]
    return level[0]


def merkle_root_packed(buf, n):
    """Merkle root over n txids packed contiguously in buf (n*32 bytes)."""
    if n == 0:
        return b"\0" * 32
    mv = memoryview(buf)
    sha = hashlib.sha256
    cur = bytes(mv[:n * 32])
    while n > 1:
        if n & 1:
            cur += cur[-32:]
            n += 1
        out = bytearray((n // 2) * 32)
        o = 0
        for i in range(0, n * 32, 64):
            out[o:o + 32] = sha(sha(cur[i:i + 64]).digest()).digest()
            o += 32
        cur = bytes(out)
        n //= 2
    return cur[:32]

# --------------------------------------------------------------------------
# Serialization helpers


def ser_compact(n):
    if n < 0xFD:
        return bytes((n,))
    if n <= 0xFFFF:
        return b"\xfd" + struct.pack("<H", n)
    if n <= 0xFFFFFFFF:
        return b"\xfe" + struct.pack("<I", n)
    return b"\xff" + struct.pack("<Q", n)


class ParseError(Exception):
    pass


def read_compact(b, off):
    """Returns (value, new_offset).  Enforces canonical encoding."""
    if off >= len(b):
        raise ParseError("short compact size")
    c = b[off]
    if c < 0xFD:
        return c, off + 1
    if c == 0xFD:
        if off + 3 > len(b):
            raise ParseError("short compact size")
        v = struct.unpack_from("<H", b, off + 1)[0]
        if v < 0xFD:
            raise ParseError("non-canonical compact size")
        return v, off + 3
    if c == 0xFE:
        if off + 5 > len(b):
            raise ParseError("short compact size")
        v = struct.unpack_from("<I", b, off + 1)[0]
        if v <= 0xFFFF:
            raise ParseError("non-canonical compact size")
        return v, off + 5
    if off + 9 > len(b):
        raise ParseError("short compact size")
    v = struct.unpack_from("<Q", b, off + 1)[0]
    if v <= 0xFFFFFFFF:
        raise ParseError("non-canonical compact size")
    return v, off + 9


def ser_varstr(b):
    if isinstance(b, str):
        b = b.encode()
    return ser_compact(len(b)) + b


def read_varstr(b, off):
    n, off = read_compact(b, off)
    if off + n > len(b):
        raise ParseError("short var_str")
    return bytes(b[off:off + n]), off + n


def ser_netaddr(services=0, ip="127.0.0.1", port=0):
    parts = bytes(int(x) for x in ip.split("."))
    return (struct.pack("<Q", services) + b"\0" * 10 + b"\xff\xff" + parts +
            struct.pack(">H", port))


def push_data(data):
    """Minimal push of data (script bytes)."""
    n = len(data)
    if n < 0x4C:
        return bytes((n,)) + data
    if n <= 0xFF:
        return b"\x4c" + bytes((n,)) + data
    if n <= 0xFFFF:
        return b"\x4d" + struct.pack("<H", n) + data
    return b"\x4e" + struct.pack("<I", n) + data


def push_int(n):
    """Minimal script number push (as BIP34 height push)."""
    if n == 0:
        return b"\x00"
    if 1 <= n <= 16:
        return bytes((0x50 + n,))
    out = bytearray()
    v = n
    while v:
        out.append(v & 0xFF)
        v >>= 8
    if out[-1] & 0x80:
        out.append(0)
    return push_data(bytes(out))

# --------------------------------------------------------------------------
# Message framing


def frame(magic, command, payload, checksum=None, force_ext=False):
    """Basic (24-byte) or extended (44-byte, `extmsg`) message header + payload."""
    cmd = command.encode() if isinstance(command, str) else command
    n = len(payload)
    return frame_header(magic, cmd, n, payload if checksum is None else None,
                        checksum, force_ext) + bytes(payload)


def frame_header(magic, command, length, payload=None, checksum=None,
                 force_ext=False):
    cmd = command.encode() if isinstance(command, str) else command
    if force_ext or length > 0xFFFFFFFF:
        return (magic + b"extmsg".ljust(12, b"\0") + b"\xff\xff\xff\xff" +
                b"\0\0\0\0" + cmd.ljust(12, b"\0") + struct.pack("<Q", length))
    if checksum is None:
        checksum = sha256d(payload)[:4] if payload is not None else b"\0" * 4
    return magic + cmd.ljust(12, b"\0") + struct.pack("<I", length) + checksum


def valid_command(raw12):
    """printable ASCII up to the first NUL, then only NULs."""
    i = raw12.find(b"\0")
    name = raw12 if i < 0 else raw12[:i]
    if i >= 0 and raw12[i:] != b"\0" * (12 - i):
        return None
    if not name or any(c < 0x20 or c > 0x7E for c in name):
        return None
    return name.decode()


def payload_limit(command, max_recv=DEFAULT_MAX_RECV_PAYLOAD):
    if command == "protoconf":
        return MAX_PROTOCONF_PAYLOAD
    if command in ("tx", "datareftx"):
        return MAX_TX_PAYLOAD
    if command in BLOCK_LIKE:
        return 1 << 64
    return max_recv

# --------------------------------------------------------------------------
# Payload builders


def ser_inv(items):
    return ser_compact(len(items)) + b"".join(
        struct.pack("<I", t) + h for t, h in items)


def parse_inv(p):
    n, off = read_compact(p, 0)
    if off + n * 36 > len(p):
        raise ParseError("short inv")
    out = []
    for _ in range(n):
        t = struct.unpack_from("<I", p, off)[0]
        out.append((t, bytes(p[off + 4:off + 36])))
        off += 36
    return out


def ser_version(start_height, nonce, recv_ip="127.0.0.1", recv_port=0,
                version=PROTOCOL_VERSION, services=NODE_SERVICES,
                user_agent=NODE_USER_AGENT, relay=1, timestamp=None,
                association=b"\x00"):
    import time
    ts = int(time.time()) if timestamp is None else timestamp
    return (struct.pack("<iQq", version, services, ts) +
            ser_netaddr(0, recv_ip, recv_port) + ser_netaddr(0, "0.0.0.0", 0) +
            struct.pack("<Q", nonce) + ser_varstr(user_agent) +
            struct.pack("<i", start_height) + bytes((relay,)) + association)


def parse_version(p):
    """Returns a dict; tolerant of missing trailing fields."""
    if len(p) < 4 + 8 + 8 + 26:
        raise ParseError("short version")
    v = {}
    v["version"], v["services"], v["timestamp"] = struct.unpack_from("<iQq", p, 0)
    off = 20
    v["addr_recv"] = bytes(p[off:off + 26])
    off += 26
    v["addr_from"] = bytes(p[off:off + 26]) if len(p) >= off + 26 else b""
    off += 26
    v["nonce"] = struct.unpack_from("<Q", p, off)[0] if len(p) >= off + 8 else 0
    off += 8
    v["user_agent"] = ""
    v["start_height"] = 0
    v["relay"] = 1
    v["association_id"] = None
    if off < len(p):
        ua, off = read_varstr(p, off)
        v["user_agent"] = ua.decode("latin-1")
    if off + 4 <= len(p):
        v["start_height"] = struct.unpack_from("<i", p, off)[0]
        off += 4
    if off < len(p):
        v["relay"] = p[off]
        off += 1
    if off < len(p):
        v["association_id"], off = read_varstr(p, off)
    return v


def ser_protoconf(max_recv=DEFAULT_MAX_RECV_PAYLOAD, policies=STREAM_POLICIES):
    return ser_compact(2) + struct.pack("<I", max_recv) + ser_varstr(policies)


def parse_protoconf(p):
    n, off = read_compact(p, 0)
    if n == 0:
        raise ParseError("protoconf with 0 fields")
    if off + 4 > len(p):
        raise ParseError("short protoconf")
    max_recv = struct.unpack_from("<I", p, off)[0]
    return n, max_recv


def ser_reject(message, code, reason, h=None):
    return ser_varstr(message) + bytes((code,)) + ser_varstr(reason) + (h or b"")


def parse_reject(p):
    msg, off = read_varstr(p, 0)
    code = p[off]
    reason, off = read_varstr(p, off + 1)
    h = bytes(p[off:off + 32]) if len(p) >= off + 32 else None
    return msg.decode(), code, reason.decode(), h


def parse_getheaders(p):
    if len(p) < 4:
        raise ParseError("short getheaders")
    ver = struct.unpack_from("<I", p, 0)[0]
    n, off = read_compact(p, 4)
    if off + 32 * n + 32 > len(p):
        raise ParseError("short getheaders")
    loc = [bytes(p[off + 32 * i:off + 32 * i + 32]) for i in range(n)]
    off += 32 * n
    return ver, loc, bytes(p[off:off + 32])


def ser_getheaders(locator, stop=b"\0" * 32, version=PROTOCOL_VERSION):
    return (struct.pack("<I", version) + ser_compact(len(locator)) +
            b"".join(locator) + stop)


def ser_headers(headers):
    return ser_compact(len(headers)) + b"".join(h + b"\x00" for h in headers)

# --------------------------------------------------------------------------
# Transactions


def parse_tx(b, off=0):
    """Parse one transaction starting at off.

    Returns (end_offset, inputs, outputs) with inputs = [(prev_txid, prev_index,
    scriptsig_start, scriptsig_end)] and outputs = [(value, script_bytes)].
    Raises ParseError on malformed data."""
    try:
        start = off
        if off + 4 > len(b):
            raise ParseError("short tx")
        off += 4
        nin, off = read_compact(b, off)
        if nin == 0:
            raise ParseError("no inputs")
        ins = []
        for _ in range(nin):
            if off + 36 > len(b):
                raise ParseError("short input")
            prev = bytes(b[off:off + 32])
            idx = struct.unpack_from("<I", b, off + 32)[0]
            off += 36
            sl, off = read_compact(b, off)
            ss = off
            off += sl
            if off + 4 > len(b):
                raise ParseError("short input")
            off += 4
            ins.append((prev, idx, ss, ss + sl))
        nout, off = read_compact(b, off)
        if nout == 0:
            raise ParseError("no outputs")
        outs = []
        for _ in range(nout):
            if off + 8 > len(b):
                raise ParseError("short output")
            val = struct.unpack_from("<q", b, off)[0]
            sl, off = read_compact(b, off + 8)
            if off + sl > len(b):
                raise ParseError("short output script")
            outs.append((val, bytes(b[off:off + sl])))
            off += sl
        if off + 4 > len(b):
            raise ParseError("short locktime")
        off += 4
        if start == 0 and off != len(b) and False:
            pass
        return off, ins, outs
    except struct.error as e:           # pragma: no cover
        raise ParseError(str(e))


def parse_block(b):
    """Returns (header, [(tx_start, tx_end, inputs, outputs)])."""
    if len(b) < 81:
        raise ParseError("short block")
    n, off = read_compact(b, 80)
    txs = []
    for _ in range(n):
        end, ins, outs = parse_tx(b, off)
        txs.append((off, end, ins, outs))
        off = end
    if off != len(b):
        raise ParseError("trailing bytes in block")
    return bytes(b[:80]), txs


NULL_HASH = b"\0" * 32
