#!/usr/bin/env node
// tracker_check.mjs - conduitd's WhatsOnChain-shaped routes as the SDK's own
// WhatsOnChain ChainTracker reads them (CONTRACT.md §4).
//
// Checks, with the tracker pointed at <base>/woc/v1/bsv/<network>:
//   isValidRootForHeight(--root, --height) is true; the same root with one
//   digit changed is false; a height above the tip (--tip + 1000) is false
//   (a 404, not an exception); currentHeight() is --tip; and, for each
//   --txid given, MerklePath.fromHex(GET /v1/tx/<txid>/bump).verify(txid,
//   tracker) is true (a non-coinbase or a young coinbase: CONTRACT.md §1.3).

import { MerklePath } from '@bsv/sdk'
import {
  args, run, http, trimBase, needTxid, wocBase, ConduitWhatsOnChain, UsageError
} from './lib/harness.mjs'

const USAGE = `
usage: node tests/sdk/tracker_check.mjs --base URL --height H --root MERKLEROOT --tip T [--network regtest] [TXID...]
prints one JSON line {"check":"tracker","ok":...}; exit 0 if every check passed
`

const { values: o, positionals } = args({
  base: { type: 'string' },
  network: { type: 'string', default: 'regtest' },
  height: { type: 'string' },
  root: { type: 'string' },
  tip: { type: 'string' },
  help: { type: 'boolean' }
}, USAGE)

run('tracker', async () => {
  const base = trimBase(o.base)
  const root = needTxid(o.root, '--root')
  const height = Number(o.height)
  const tip = Number(o.tip)
  if (!Number.isInteger(height) || !Number.isInteger(tip)) throw new UsageError('--height and --tip: integers expected')
  const tracker = new ConduitWhatsOnChain(wocBase(base, o.network), o.network)
  const r = { check: 'tracker', url: tracker.URL, failures: [] }
  const expect = (what, got, want) => { if (got !== want) r.failures.push(`${what}: got ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`) }
  expect('isValidRootForHeight(root, height)', await tracker.isValidRootForHeight(root, height), true)
  const wrong = (root[0] === '0' ? '1' : '0') + root.slice(1)
  expect('isValidRootForHeight(wrong root, height)', await tracker.isValidRootForHeight(wrong, height), false)
  expect('isValidRootForHeight(root, tip + 1000)', await tracker.isValidRootForHeight(root, tip + 1000), false)
  expect('currentHeight()', await tracker.currentHeight(), tip)
  for (const t of positionals.map((x) => needTxid(x))) {
    const res = await http(`${base}/v1/tx/${t}/bump`)
    if (res.status !== 200) { r.failures.push(`GET /v1/tx/${t}/bump: HTTP ${res.status}`); continue }
    const mp = MerklePath.fromHex(res.text.trim())
    expect(`MerklePath.verify(${t})`, await mp.verify(t, tracker), true)
  }
  r.calls = tracker.calls
  r.ok = r.failures.length === 0
  return r
})
