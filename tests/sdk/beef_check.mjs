#!/usr/bin/env node
// beef_check.mjs - conduitd's BEEF (BRC-62 V1, BRC-96 V2, BRC-95 Atomic) as
// the published @bsv/sdk reads and verifies it.
//
// GET <base>/v1/tx/<txid>/beef?version=1|2|atomic (hex, or raw bytes when
// served as application/octet-stream), check the 4-byte prefix, parse it with
// Beef.fromBinary (report bumps, transactions, their order), then
// Transaction.fromBEEF(beef, txid) (fromAtomicBEEF for atomic) and
// tx.verify(tracker) where tracker is the SDK's own WhatsOnChain ChainTracker
// pointed at <base>/woc/v1/bsv/<network>. Also beef.verify(tracker) (every
// BUMP's root against the tracker). With --beef HEX the BEEF is checked
// without fetching it.

import { Beef, Transaction } from '@bsv/sdk'
import {
  args, run, http, trimBase, needTxid, bodyBytes, hexToBytes, bytesToHex,
  wocBase, ConduitWhatsOnChain, UsageError
} from './lib/harness.mjs'

const USAGE = `
usage: node tests/sdk/beef_check.mjs --base URL --txid TXID [options]
  --base URL        conduitd HTTP API (http://127.0.0.1:8085)
  --txid TXID       the subject transaction
  --version V       1 (BRC-62, 0100BEEF), 2 (BRC-96, 0200BEEF) or atomic (BRC-95); default 1
  --network NET     WhatsOnChain network path element (default regtest)
  --woc URL         ChainTracker base instead of <base>/woc/v1/bsv/<network>
  --beef HEX        check this BEEF instead of fetching it (--base still serves the tracker)
  --expect-txs N    require N transactions in the BEEF
  --expect-bumps N  require N BUMPs in the BEEF
prints one JSON line {"check":"beef","ok":...}; exit 0 if tx.verify(tracker) is true
`

const { values: o } = args({
  base: { type: 'string' },
  txid: { type: 'string' },
  version: { type: 'string', default: '1' },
  network: { type: 'string', default: 'regtest' },
  woc: { type: 'string' },
  beef: { type: 'string' },
  'expect-txs': { type: 'string' },
  'expect-bumps': { type: 'string' },
  help: { type: 'boolean' }
}, USAGE)

const PREFIX = { 1: '0100beef', 2: '0200beef', atomic: '01010101' }

run('beef', async () => {
  const base = trimBase(o.base)
  const txid = needTxid(o.txid, '--txid')
  const version = o.version
  if (!(version in PREFIX)) throw new UsageError('--version: 1, 2 or atomic')
  const out = { check: 'beef', ok: false, txid, version }
  const fail = (why) => { out.error = why; return out }

  let bytes
  if (o.beef !== undefined) {
    bytes = hexToBytes(o.beef)
    out.source = '--beef'
  } else {
    const url = `${base}/v1/tx/${txid}/beef?version=${version}`
    const res = await http(url)
    out.source = url
    out.http = res.status
    out.content_type = res.contentType
    if (res.status !== 200) return fail(`HTTP ${res.status}: ${res.text.slice(0, 300)}`)
    try {
      bytes = bodyBytes(res)
    } catch (e) {
      return fail(`body: ${e.message}`)
    }
  }
  out.size = bytes.length
  const hex = bytesToHex(bytes)
  out.prefix = hex.slice(0, 8)
  if (out.prefix !== PREFIX[version]) return fail(`prefix ${out.prefix}, expected ${PREFIX[version]}`)
  if (version === 'atomic') {
    const subject = bytesToHex(bytes.slice(4, 36).reverse())
    out.atomic_subject = subject
    out.inner_prefix = hex.slice(72, 80)
    if (subject !== txid) return fail(`atomic subject txid ${subject}, expected ${txid}`)
    if (out.inner_prefix !== '0100beef' && out.inner_prefix !== '0200beef') return fail(`atomic: inner BEEF prefix ${out.inner_prefix}`)
  }

  // Structure, from a parse of our own (isValid() re-sorts the parsed copy).
  let beef
  try {
    beef = Beef.fromBinary(bytes)
  } catch (e) {
    return fail(`Beef.fromBinary: ${e.message}`)
  }
  out.bumps = beef.bumps.map((b) => ({
    blockHeight: b.blockHeight,
    txids: b.path[0].filter((l) => l.txid === true).map((l) => l.hash)
  }))
  out.txs = beef.txs.map((t) => {
    const e = { txid: t.txid }
    if (t.bumpIndex !== undefined) e.bumpIndex = t.bumpIndex
    if (t.isTxidOnly) e.txidOnly = true
    return e
  })
  if (o['expect-txs'] !== undefined && out.txs.length !== Number(o['expect-txs'])) {
    return fail(`${out.txs.length} transactions, expected ${o['expect-txs']}`)
  }
  if (o['expect-bumps'] !== undefined && out.bumps.length !== Number(o['expect-bumps'])) {
    return fail(`${out.bumps.length} BUMPs, expected ${o['expect-bumps']}`)
  }
  const last = out.txs[out.txs.length - 1]?.txid
  out.subject_last = last === txid
  if (!out.subject_last) return fail(`the last transaction is ${last}, not the subject (BRC-62 order: parents first)`)
  const seen = new Set()
  for (const t of beef.txs) { // parents before children, as written
    for (const p of t.inputTxids) {
      if (beef.findTxid(p) !== undefined && !seen.has(p)) return fail(`${t.txid} comes before its parent ${p}`)
    }
    seen.add(t.txid)
  }
  out.structurally_valid = Beef.fromBinary(bytes).isValid(false)
  if (!out.structurally_valid) return fail('Beef.isValid() is false (a tx neither proven nor chained to proven parents, a txid-only entry, or a duplicate)')

  const tracker = new ConduitWhatsOnChain(o.woc ?? wocBase(base, o.network), o.network)
  out.tracker = tracker.URL
  let tx
  try {
    tx = version === 'atomic' ? Transaction.fromAtomicBEEF(bytes) : Transaction.fromBEEF(bytes, txid)
  } catch (e) {
    return fail(`Transaction.${version === 'atomic' ? 'fromAtomicBEEF' : 'fromBEEF'}: ${e.message}`)
  }
  if (tx.id('hex') !== txid) return fail(`the SDK picked ${tx.id('hex')}`)
  out.subject_has_proof = tx.merklePath !== undefined
  try {
    out.verify = await tx.verify(tracker)
  } catch (e) {
    out.verify = false
    out.verify_error = e.message
  }
  try {
    out.beef_verify = await Beef.fromBinary(bytes).verify(tracker, false)
  } catch (e) {
    out.beef_verify = false
    out.beef_verify_error = e.message
  }
  out.tracker_calls = tracker.calls
  if (out.verify !== true) {
    const cb = beef.bumps.some((b) => b.path[0].some((l) => l.offset === 0 && l.txid === true))
    if (cb) out.hint = 'a BUMP proves a coinbase (offset 0): MerklePath.verify in @bsv/sdk 2.1.0 returns false when that block is more than 100 below currentHeight (see CONTRACT.md)'
    return fail(out.verify_error ?? 'tx.verify(tracker) returned false')
  }
  if (out.beef_verify !== true) return fail(out.beef_verify_error ?? 'beef.verify(tracker) returned false')
  out.ok = true
  return out
})
