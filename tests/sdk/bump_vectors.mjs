#!/usr/bin/env node
// bump_vectors.mjs - canonical BUMPs (lib/bump_ref.mjs) for a block's txids,
// each checked with the SDK (MerklePath.fromHex -> computeRoot) before it is
// printed: test vectors for conduitd's C implementation and its tests.
//
//   node tests/sdk/bump_vectors.mjs --txids-file F --height H --pos 0 --pos 7
//       one (compound) BUMP for those positions: {"root", "bump", "json"}
//   node tests/sdk/bump_vectors.mjs --selftest 300
//       random blocks (1..300 txs) and position sets: canonical BUMP -> SDK root
//   node tests/sdk/bump_vectors.mjs --doc
//       the vectors quoted in CONTRACT.md (mainnet block 125632, from the SDK's tests)

import { readFileSync } from 'node:fs'
import { randomBytes, randomInt } from 'node:crypto'
import { MerklePath } from '@bsv/sdk'
import { args, finish, UsageError } from './lib/harness.mjs'
import { canonicalBump, canonicalBumpJson, merkleRoot } from './lib/bump_ref.mjs'

const USAGE = `
usage: node tests/sdk/bump_vectors.mjs (--txids-file F --height H --pos N... | --selftest COUNT | --doc)
`

const { values: o } = args({
  'txids-file': { type: 'string' },
  height: { type: 'string' },
  pos: { type: 'string', multiple: true, default: [] },
  selftest: { type: 'string' },
  doc: { type: 'boolean' },
  help: { type: 'boolean' }
}, USAGE)

// Mainnet block 125632, 11 txs (odd at levels 0 and 2): the block the SDK's own tests use.
const BLOCK_125632 = {
  height: 125632,
  merkleroot: '205b2e27c58601fc1a8de04c83b6b0c46f89c16b2161c93441b7e9269cf6bc4a',
  tx: [
    '17cba98da71fe75862aac894392f2ff604356db386767fec364877a5a9ff200c',
    '14ce64bd223ec9bb42662b74fdcf94f96a209a1aee72b7ba7639db503150ec2e',
    '90a2de85351cfadd2326b9b0098e9c453af09b2980835f57a1429bbb44beb872',
    'a31f2ddfea7ddd4581dca3007ee99e58ea6baa97a8ac3b32bb4610baac9f7206',
    'c36eeed6fbc0259d30804f59f804dfcda35a54461157d6ac9c094f0ea378f35c',
    '17752483868c52a98407a0e226d73b42e214e0fad548541619d858e1fd4a9549',
    '3b8c4460412cfc55be0d50308ba704a859bd6f83bfed01b0828c9b067cd69246',
    'a3f1b9d4b3ef3b061af352fdc2d02048417030fef9282c36da689cd899437cdb',
    '66e2b022da877621ef197e02c3ef7d3f820d33a86ead2e72bf966432ea6776f1',
    'e988b5d7a2cec8e0759ade2e151737d1cdfdde68accff42938583ad12eb98b99',
    '5e7a8a8ec3f912ac1c4e90279c04263f170ed055c0411c8d490b846f01e6a99e'
  ]
}

/** Build, then make the SDK parse it and compute every requested txid's root. */
function vector (height, txids, positions) {
  const root = merkleRoot(txids)
  const bump = canonicalBump(height, txids, positions)
  const mp = MerklePath.fromHex(bump)
  for (const p of positions) {
    const r = mp.computeRoot(txids[p])
    if (r !== root) throw new Error(`SDK computeRoot(${txids[p]}) = ${r}, block root ${root} (n=${txids.length}, positions ${positions})`)
  }
  if (mp.toHex() !== bump) throw new Error(`SDK re-serializes differently (n=${txids.length}, positions ${positions})`)
  const json = canonicalBumpJson(height, txids, positions)
  if (new MerklePath(json.blockHeight, json.path).toHex() !== bump) throw new Error('JSON form differs')
  return { height, positions, txids: positions.map((p) => txids[p]), root, bump, json }
}

function selftest (count) {
  let checked = 0
  for (let i = 0; i < count; i++) {
    const n = 1 + randomInt(i < 40 ? 40 : 300)
    const txids = Array.from({ length: n }, () => randomBytes(32).toString('hex'))
    const k = 1 + randomInt(Math.min(n, 6))
    const pos = [...new Set(Array.from({ length: k }, () => randomInt(n)))]
    vector(randomInt(1 << 20), txids, pos)
    vector(7, txids, [n - 1])
    checked += 2
  }
  return { check: 'bump_vectors', ok: true, selftest: checked }
}

try {
  if (o.selftest !== undefined) finish(selftest(Number(o.selftest)))
  if (o.doc) {
    const b = BLOCK_125632
    const v = [[0], [8], [10], [2, 5, 8]].map((p) => vector(b.height, b.tx, p))
    if (v[0].root !== b.merkleroot) throw new Error('root of block 125632')
    finish({ check: 'bump_vectors', ok: true, vectors: v })
  }
  if (o['txids-file'] === undefined || o.height === undefined || o.pos.length === 0) throw new UsageError(USAGE)
  const txids = readFileSync(o['txids-file'], 'utf8').split(/\s+/).filter(Boolean).map((t) => t.toLowerCase())
  finish({ check: 'bump_vectors', ok: true, ...vector(Number(o.height), txids, o.pos.map(Number)) })
} catch (e) {
  if (e instanceof UsageError) { process.stderr.write(e.message); process.exit(2) }
  finish({ check: 'bump_vectors', ok: false, error: e.message })
}
