// bump_ref.mjs - the canonical BUMP (BRC-74) that CONTRACT.md asks conduitd to
// serve, built from a block's full txid list with node:crypto only (not with
// the SDK's MerklePath, so that the SDK checks an independent encoding).
//
// Canonical form, for the requested positions P of a block of n txids:
//   tree height  = max(1, ceil(log2 n))   (levels below the root; 1 for n = 1)
//   level 0      = each requested txid (flag 2) and, unless n = 1, its sibling:
//                  the sibling's hash (flag 0, or flag 2 if also requested) or,
//                  when the txid is the last node of an odd-length level, a
//                  duplicate marker (flag 1, no hash) at offset txid ^ 1
//   level h >= 1 = for each requested position p, the sibling (p >> h) ^ 1 of its
//                  ancestor: hash (flag 0), or duplicate (flag 1) when the
//                  ancestor is the last node of an odd-length level; omitted
//                  when that sibling is itself an ancestor of a requested
//                  position (it is computable from level 0)
//   every level sorted by offset, no offset twice; hashes in internal byte order.

import { createHash } from 'node:crypto'

const sha256 = (b) => createHash('sha256').update(b).digest()
const sha256d = (b) => sha256(sha256(b))

function varint (n) {
  if (n < 0xfd) return Buffer.from([n])
  if (n <= 0xffff) { const b = Buffer.alloc(3); b[0] = 0xfd; b.writeUInt16LE(n, 1); return b }
  if (n <= 0xffffffff) { const b = Buffer.alloc(5); b[0] = 0xfe; b.writeUInt32LE(n, 1); return b }
  const b = Buffer.alloc(9); b[0] = 0xff; b.writeBigUInt64LE(BigInt(n), 1); return b
}

const cache = new WeakMap() // txid array -> its levels (one block, many BUMPs)

/** Internal-order hashes of every level, leaves first, root last. */
export function merkleLevels (txidsDisplay) {
  if (cache.has(txidsDisplay)) return cache.get(txidsDisplay)
  const levels = [txidsDisplay.map((t) => Buffer.from(t, 'hex').reverse())]
  for (let l = levels[0]; l.length > 1; l = levels[levels.length - 1]) {
    const up = []
    for (let i = 0; i < l.length; i += 2) up.push(sha256d(Buffer.concat([l[i], l[i + 1] ?? l[i]])))
    levels.push(up)
  }
  cache.set(txidsDisplay, levels)
  return levels
}

export function merkleRoot (txidsDisplay) {
  const levels = merkleLevels(txidsDisplay)
  return Buffer.from(levels[levels.length - 1][0]).reverse().toString('hex')
}

/** Leaves of the canonical BUMP: [[{offset, flags, hash (internal Buffer)}]] per level. */
export function canonicalLeaves (txidsDisplay, positions) {
  if (positions.length === 0) throw new Error('no position requested')
  const levels = merkleLevels(txidsDisplay)
  const n = txidsDisplay.length
  const treeHeight = Math.max(1, levels.length - 1)
  const path = Array.from({ length: treeHeight }, () => new Map())
  for (const p of positions) {
    if (!Number.isInteger(p) || p < 0 || p >= n) throw new Error(`position ${p} outside the block`)
    path[0].set(p, { offset: p, flags: 2, hash: levels[0][p] })
  }
  if (n > 1) {
    for (let h = 0; h < treeHeight; h++) {
      const ancestors = new Set(positions.map((p) => p >> h))
      for (const p of positions) {
        const sib = (p >> h) ^ 1
        if (ancestors.has(sib) || path[h].has(sib)) continue
        path[h].set(sib, sib < levels[h].length ? { offset: sib, flags: 0, hash: levels[h][sib] } : { offset: sib, flags: 1 })
      }
    }
  }
  return path.map((m) => [...m.values()].sort((a, b) => a.offset - b.offset))
}

export function canonicalBump (blockHeight, txidsDisplay, positions) {
  const parts = [varint(blockHeight)]
  const leaves = canonicalLeaves(txidsDisplay, positions)
  parts.push(Buffer.from([leaves.length]))
  for (const level of leaves) {
    parts.push(varint(level.length))
    for (const l of level) {
      parts.push(varint(l.offset), Buffer.from([l.flags]))
      if (l.flags !== 1) parts.push(l.hash)
    }
  }
  return Buffer.concat(parts).toString('hex')
}

/** The BRC-74 JSON form of the same path (hashes in display hex). */
export function canonicalBumpJson (blockHeight, txidsDisplay, positions) {
  return {
    blockHeight,
    path: canonicalLeaves(txidsDisplay, positions).map((level) => level.map((l) => {
      if (l.flags === 1) return { offset: l.offset, duplicate: true }
      const leaf = { offset: l.offset, hash: Buffer.from(l.hash).reverse().toString('hex') }
      if (l.flags === 2) leaf.txid = true
      return leaf
    }))
  }
}
