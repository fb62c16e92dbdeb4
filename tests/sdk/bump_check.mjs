#!/usr/bin/env node
// bump_check.mjs - conduitd's BUMPs (BRC-74) as the published @bsv/sdk reads them.
//
// For each txid: GET <base>/v1/tx/<txid>/bump (hex), parse it with
// MerklePath.fromHex (which also runs the SDK's structural checks), and check
// that computeRoot(txid) is the given merkle root, that the txid's level-0
// leaf carries the "client txid" flag, that the SDK re-serializes the same
// bytes, and that ?format=json and ?format=binary describe the same path.
// With --bump HEX (a BUMP from anywhere, e.g. a compound BUMP from
// conduit-cli), the txids are checked against that one BUMP instead of
// fetching.

import { readFileSync } from 'node:fs'
import { MerklePath } from '@bsv/sdk'
import {
  args, run, http, trimBase, needTxid, hexToBytes, bytesToHex, UsageError, HEX64
} from './lib/harness.mjs'
import { canonicalBump } from './lib/bump_ref.mjs'

const USAGE = `
usage: node tests/sdk/bump_check.mjs --base URL --root MERKLEROOT [options] TXID...
  --base URL        conduitd HTTP API (http://127.0.0.1:8085)
  --root HEX        the block's merkle root (display hex) every txid must compute to
  --height N        also require the BUMP's blockHeight to be N
  --txids-file F    more txids, one per line (e.g. ../shared/data/mainnet/block413567.txids)
  --bump HEX        check the txids against this BUMP (hex) instead of fetching one per txid
  --exact           also require the byte-exact canonical BUMP of CONTRACT.md (lib/bump_ref.mjs);
                    needs --txids-file holding the whole block in order, and --height
  --no-json         skip the ?format=json comparison
  --no-binary       skip the ?format=binary comparison
  --concurrency N   parallel requests (default 8)
  --verbose         per-txid details in the result, not only failures
prints one JSON line {"check":"bump","ok":...}; exit 0 if every txid passed
`

const { values: o, positionals } = args({
  base: { type: 'string' },
  root: { type: 'string' },
  height: { type: 'string' },
  'txids-file': { type: 'string' },
  bump: { type: 'string' },
  exact: { type: 'boolean' },
  'no-json': { type: 'boolean' },
  'no-binary': { type: 'boolean' },
  concurrency: { type: 'string', default: '8' },
  verbose: { type: 'boolean' },
  help: { type: 'boolean' }
}, USAGE)

/** JSON leaves as the SDK's constructor takes them, levels sorted by offset. */
function pathFromJson (j) {
  if (j === null || typeof j !== 'object') throw new Error('JSON BUMP is not an object')
  if (!Number.isInteger(j.blockHeight)) throw new Error('JSON BUMP: blockHeight must be an integer')
  if (!Array.isArray(j.path) || !j.path.every(Array.isArray)) throw new Error('JSON BUMP: path must be an array of arrays of leaves')
  const path = j.path.map((level) => level.map((l) => {
    const leaf = { offset: l.offset }
    if (l.duplicate === true) leaf.duplicate = true
    else leaf.hash = l.hash
    if (l.txid === true) leaf.txid = true
    return leaf
  }).sort((a, b) => a.offset - b.offset))
  return new MerklePath(j.blockHeight, path)
}

async function checkOne (base, txid, root, height, bumpHex, canonical) {
  const r = { txid }
  const fail = (why) => { r.ok = false; r.reason = why; return r }
  let hex = bumpHex
  if (hex === undefined) {
    const res = await http(`${base}/v1/tx/${txid}/bump`)
    r.http = res.status
    if (res.status !== 200) return fail(`GET /v1/tx/${txid}/bump: HTTP ${res.status} ${res.text.slice(0, 200)}`)
    hex = res.text.trim()
  }
  let mp
  try {
    mp = MerklePath.fromHex(hex)
  } catch (e) {
    return fail(`MerklePath.fromHex: ${e.message}`)
  }
  r.blockHeight = mp.blockHeight
  r.treeHeight = mp.path.length
  let computed
  try {
    computed = mp.computeRoot(txid)
  } catch (e) {
    return fail(`computeRoot: ${e.message}`)
  }
  r.root = computed
  if (computed !== root) return fail(`computeRoot(txid) = ${computed}, expected ${root}`)
  if (height !== undefined && mp.blockHeight !== height) return fail(`blockHeight ${mp.blockHeight}, expected ${height}`)
  const leaf = mp.path[0].find((l) => l.hash === txid)
  if (leaf.txid !== true) return fail('the txid leaf at level 0 lacks the client-txid flag (2)')
  if (mp.toHex() !== hex.toLowerCase()) {
    return fail(`not canonical: the SDK re-serializes it as ${mp.toHex()} (levels sorted by offset, flags 0/1/2)`)
  }
  if (canonical !== undefined && hex.toLowerCase() !== canonical) {
    return fail(`differs from the canonical BUMP ${canonical}`)
  }
  if (bumpHex === undefined && !o['no-json']) {
    const res = await http(`${base}/v1/tx/${txid}/bump?format=json`)
    if (res.status !== 200) return fail(`?format=json: HTTP ${res.status}`)
    if (!res.contentType.startsWith('application/json')) return fail(`?format=json: Content-Type ${res.contentType}`)
    let jp
    try {
      jp = pathFromJson(JSON.parse(res.text))
    } catch (e) {
      return fail(`?format=json: ${e.message}`)
    }
    if (jp.toHex() !== mp.toHex()) return fail('?format=json describes another path than the hex')
    r.json = true
  }
  if (bumpHex === undefined && !o['no-binary']) {
    const res = await http(`${base}/v1/tx/${txid}/bump?format=binary`)
    if (res.status !== 200) return fail(`?format=binary: HTTP ${res.status}`)
    if (!res.contentType.startsWith('application/octet-stream')) return fail(`?format=binary: Content-Type ${res.contentType}`)
    if (bytesToHex(res.bytes) !== hex.toLowerCase()) return fail('?format=binary bytes differ from the hex')
    r.binary = true
  }
  r.ok = true
  return r
}

run('bump', async () => {
  const base = o.bump === undefined ? trimBase(o.base) : (o.base ?? '').replace(/\/+$/, '')
  const root = needTxid(o.root, '--root')
  const height = o.height === undefined ? undefined : Number(o.height)
  if (height !== undefined && !Number.isInteger(height)) throw new UsageError('--height: integer expected')
  let txids = [...positionals]
  let block
  if (o['txids-file']) {
    block = readFileSync(o['txids-file'], 'utf8').split(/\s+/).filter(Boolean).map((t) => needTxid(t))
    txids.push(...block)
  }
  txids = txids.map((t) => needTxid(t))
  if (txids.length === 0) throw new UsageError('no txid given')
  let position
  if (o.exact) {
    if (block === undefined || height === undefined) throw new UsageError('--exact needs --txids-file (the whole block, in order) and --height')
    position = new Map(block.map((t, i) => [t, i]))
  }
  if (o.bump !== undefined) {
    hexToBytes(o.bump) // usage check
    if (!HEX64.test(root)) throw new UsageError('--root')
  }
  const results = new Array(txids.length)
  let next = 0
  const worker = async () => {
    while (next < txids.length) {
      const i = next++
      try {
        const canonical = position === undefined ? undefined : canonicalBump(height, block, [position.get(txids[i])])
        results[i] = await checkOne(base, txids[i], root, height, o.bump, canonical)
      } catch (e) {
        results[i] = { txid: txids[i], ok: false, reason: String(e.message) }
      }
    }
  }
  const n = Math.max(1, Number(o.concurrency) || 8)
  await Promise.all(Array.from({ length: Math.min(n, txids.length) }, worker))
  const failures = results.filter((r) => !r.ok)
  const out = {
    check: 'bump',
    ok: failures.length === 0,
    root,
    source: o.bump === undefined ? `${base}/v1/tx/<txid>/bump` : '--bump',
    count: txids.length,
    passed: txids.length - failures.length,
    failures: failures.slice(0, 20)
  }
  if (failures.length > 20) out.more_failures = failures.length - 20
  if (o.verbose) out.results = results
  return out
})
