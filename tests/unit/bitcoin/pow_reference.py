#!/usr/bin/python3
"""pow_reference.py - independent reference for test_pow.c.

Re-implements the node's next-work-required rules with Python integers
(no shared code with src/bitcoin/btc_pow.c), generates the same synthetic
chains test_pow.c generates, and prints the expected nBits as the C table
`pow_cases[]` that test_pow.c embeds. Run: /usr/bin/python3 pow_reference.py
"""

M64 = (1 << 64) - 1

LIMIT = {  # network pow limits
    'main': (1 << 224) - 1,
    'test': (1 << 224) - 1,
    'regtest': (1 << 255) - 1,
}
DAA = {'main': 504031, 'test': 1188697, 'regtest': 0}
MINDIFF = {'main': False, 'test': True, 'regtest': True}
NORETARGET = {'main': False, 'test': False, 'regtest': True}


def set_compact(c):
    size = c >> 24
    word = c & 0x007fffff
    if size <= 3:
        word >>= 8 * (3 - size)
        v = word
    else:
        v = word << (8 * (size - 3))
    neg = word != 0 and (c & 0x00800000) != 0
    over = word != 0 and (size > 34 or (word > 0xff and size > 33) or (word > 0xffff and size > 32))
    return v & ((1 << 256) - 1), neg, over


def get_compact(v):
    size = (v.bit_length() + 7) // 8
    if size <= 3:
        c = (v << (8 * (3 - size))) & 0xffffffff
    else:
        c = (v >> (8 * (size - 3))) & 0xffffffff
    if c & 0x00800000:
        c >>= 8
        size += 1
    return c | (size << 24)


def work(bits):
    t, neg, over = set_compact(bits)
    if neg or over or t == 0:
        return 0
    return (1 << 256) // (t + 1)


def lcg(x):
    return (x * 6364136223846793005 + 1442695040888963407) & M64


def gen(sc):
    """Blocks as dicts keyed by height: (time, bits, chainwork)."""
    x = sc['seed']
    t = sc['t0']
    w = sc['w0']
    out = {}
    for k in range(sc['n']):
        x = lcg(x)
        if k > 0:
            if k >= sc['tail_start']:
                t += sc['tail_spacing']
            else:
                t += sc['base'] + ((x >> 33) % sc['jitter']) - sc['jitter_off']
        b = sc['bits'][(x >> 20) % len(sc['bits'])]
        w += work(b)
        out[sc['h0'] + k] = (t & 0xffffffff, b, w)
    return out


def mtp(ch, h):
    ts = sorted(ch[j][0] for j in range(max(h - 10, min(ch)), h + 1))
    return ts[len(ts) // 2]


def suitable(ch, h):
    b = [(h - 2, ch[h - 2]), (h - 1, ch[h - 1]), (h, ch[h])]
    if b[0][1][0] > b[2][1][0]:
        b[0], b[2] = b[2], b[0]
    if b[0][1][0] > b[1][1][0]:
        b[0], b[1] = b[1], b[0]
    if b[1][1][0] > b[2][1][0]:
        b[1], b[2] = b[2], b[1]
    return b[1]


def next_bits(net, ch, ph, new_time):
    limit = LIMIT[net]
    lbits = get_compact(limit)
    pt, pb, pw = ch[ph]
    if NORETARGET[net]:
        return pb
    if ph >= DAA[net]:
        if MINDIFF[net] and new_time > pt + 1200:
            return lbits
        (lh, (lt, _, lw)) = suitable(ch, ph)
        (fh, (ft, _, fw)) = suitable(ch, ph - 144)
        wk = (lw - fw) * 600
        span = lt - ft
        span = min(max(span, 72 * 600), 288 * 600)
        wk //= span
        target = (2 ** 256 - wk) // wk
        return get_compact(min(target, limit))
    h = ph + 1
    if h % 2016 == 0:
        ft = ch[ph - 2015][0]
        span = pt - ft
        span = min(max(span, 1209600 // 4), 1209600 * 4)
        t, _, _ = set_compact(pb)
        t = (t * span) % (1 << 256) // 1209600
        return get_compact(min(t, limit))
    if MINDIFF[net]:
        if new_time > pt + 1200:
            return lbits
        j = ph
        while j > 0 and j % 2016 != 0 and ch[j][1] == lbits:
            j -= 1
        return ch[j][1]
    if pb == lbits:
        return lbits
    if mtp(ch, ph) - mtp(ch, ph - 6) < 12 * 3600:
        return pb
    t, _, _ = set_compact(pb)
    t += t >> 2
    return get_compact(min(t, limit))


# Scenarios; test_pow.c has the same list (same order, same fields).
SCEN = [
    # 0 legacy retarget, blocks slightly fast/slow, mainnet
    dict(net='main', h0=0, n=4032, t0=1231006505, seed=1, base=600, jitter=400, jitter_off=200,
         tail_start=10**9, tail_spacing=0, bits=[0x1b0404cb], w0=0,
         checks=[(2015, 600), (4031, 600), (3000, 600), (2014, 600)]),
    # 1 fast blocks: clamp at timespan/4
    dict(net='main', h0=0, n=2016, t0=1300000000, seed=2, base=100, jitter=20, jitter_off=10,
         tail_start=10**9, tail_spacing=0, bits=[0x1b0404cb], w0=0, checks=[(2015, 600)]),
    # 2 slow blocks: clamp at timespan*4; and near the limit: capped
    dict(net='main', h0=0, n=2016, t0=1300000000, seed=3, base=3000, jitter=600, jitter_off=0,
         tail_start=10**9, tail_spacing=0, bits=[0x1b0404cb], w0=0, checks=[(2015, 600)]),
    dict(net='main', h0=0, n=2016, t0=1300000000, seed=4, base=1500, jitter=600, jitter_off=0,
         tail_start=10**9, tail_spacing=0, bits=[0x1d00d86a], w0=0, checks=[(2015, 600)]),
    # 4 EDA: the last blocks take 3 hours each
    dict(net='main', h0=478000, n=60, t0=1500000000, seed=5, base=600, jitter=300,
         jitter_off=150, tail_start=40, tail_spacing=3 * 3600, bits=[0x18034567], w0=1 << 80,
         checks=[(478039, 600), (478041, 600), (478043, 600), (478045, 600), (478047, 600),
                 (478050, 600), (478059, 600)]),
    # 5 cash DAA: random spacing and a mix of bits
    dict(net='main', h0=600000, n=400, t0=1570000000, seed=6, base=300, jitter=900,
         jitter_off=0, tail_start=10**9, tail_spacing=0,
         bits=[0x18034567, 0x1803a30c, 0x1802f5c2, 0x18040000], w0=1 << 90,
         checks=[(600146, 600), (600200, 600), (600399, 600), (600300, 1)]),
    # 6 cash DAA with non-monotonic timestamps (exercises the median of 3)
    dict(net='main', h0=700000, n=300, t0=1600000000, seed=7, base=600, jitter=4000,
         jitter_off=2000, tail_start=10**9, tail_spacing=0, bits=[0x1804a1b2], w0=1 << 90,
         checks=[(700150, 600), (700222, 600), (700299, 600)]),
    # 7 cash DAA, very slow blocks: timespan clamp at 288 and pow limit cap
    dict(net='main', h0=700000, n=300, t0=1600000000, seed=8, base=6000, jitter=10,
         jitter_off=0, tail_start=10**9, tail_spacing=0, bits=[0x1d00ffff], w0=0,
         checks=[(700299, 600)]),
    # 8 cash DAA, very fast blocks: clamp at 72
    dict(net='main', h0=700000, n=300, t0=1600000000, seed=9, base=10, jitter=10,
         jitter_off=0, tail_start=10**9, tail_spacing=0, bits=[0x1804a1b2], w0=0,
         checks=[(700299, 600)]),
    # 9 testnet legacy: min-difficulty blocks among normal ones
    dict(net='test', h0=4000, n=100, t0=1400000000, seed=10, base=600, jitter=100,
         jitter_off=0, tail_start=10**9, tail_spacing=0, bits=[0x1c0ffff0, 0x1d00ffff, 0x1d00ffff],
         w0=0, checks=[(4099, 600), (4099, 1201), (4098, 1200), (4050, 600), (4033, 600)]),
    # 10 testnet, walk back stops at a retarget boundary (height 4032)
    dict(net='test', h0=4030, n=6, t0=1400000000, seed=11, base=600, jitter=100,
         jitter_off=0, tail_start=10**9, tail_spacing=0, bits=[0x1d00ffff], w0=0,
         checks=[(4035, 600)]),
    # 11 testnet DAA era: 20-minute rule and normal DAA
    dict(net='test', h0=1300000, n=200, t0=1600000000, seed=12, base=600, jitter=600,
         jitter_off=300, tail_start=10**9, tail_spacing=0, bits=[0x1c0ffff0], w0=1 << 70,
         checks=[(1300199, 600), (1300199, 1201)]),
    # 12 regtest: never retargets
    dict(net='regtest', h0=0, n=3000, t0=1296688602, seed=13, base=1, jitter=2, jitter_off=0,
         tail_start=10**9, tail_spacing=0, bits=[0x207fffff], w0=0, checks=[(2015, 600), (2999, 9999)]),
]

if __name__ == '__main__':
    print('/* generated by pow_reference.py > pow_cases.inc: {scenario, prev height, new time delta, bits} */')
    for i, sc in enumerate(SCEN):
        ch = gen(sc)
        for (ph, dt) in sc['checks']:
            nt = ch[ph][0] + dt
            print('    {%d, %d, %d, 0x%08x},' % (i, ph, dt, next_bits(sc['net'], ch, ph, nt)))
