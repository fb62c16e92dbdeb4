#!/usr/bin/env node
// callback_receiver.mjs - an ARC callback endpoint (X-CallbackUrl) that
// records what conduitd POSTs and checks a MINED callback's BUMP with the SDK.
//
// Listens on 127.0.0.1 (port 0 = ephemeral), announces its URL on stderr (and
// in --ready-file), records every request, answers 2xx (or 503 for the first
// --fail-first requests, to exercise the sender's retries; 401 when --token
// is set and Authorization is not "Bearer <token>"). ARC sends one callback
// object per POST, or with X-CallbackBatch {"count", "callbacks": [...]}.
// For a MINED callback it checks MerklePath.fromHex(merklePath).computeRoot(txid)
// (= --root if given), blockHeight against the BUMP's, and, with --base,
// MerklePath.verify(txid, tracker) against conduitd's WhatsOnChain endpoints.
// Stops when every status of --until was received for --txid (any txid if
// none), or at --timeout; then prints one JSON result line.

import { createServer } from 'node:http'
import { writeFileSync } from 'node:fs'
import { MerklePath } from '@bsv/sdk'
import { args, finish, needTxid, wocBase, ConduitWhatsOnChain, UsageError } from './lib/harness.mjs'

const USAGE = `
usage: node tests/sdk/callback_receiver.mjs [options]
  --port N          port on 127.0.0.1 (default 0: ephemeral; the URL is printed on stderr)
  --path P          callback path (default /callback)
  --ready-file F    write {"url": ...} to F once listening
  --txid TXID       the transaction whose callbacks matter (default: any)
  --until LIST      statuses to wait for, comma-separated (default MINED)
  --token TOK       require Authorization: Bearer TOK (X-CallbackToken), else answer 401
  --fail-first N    answer 503 to the first N requests (retry check)
  --root HEX        a MINED BUMP must compute to this merkle root
  --base URL        also MerklePath.verify(txid, WhatsOnChain tracker at <base>/woc/v1/bsv/<network>)
  --network NET     (default regtest)
  --timeout S       give up after S seconds (default 120)
prints one JSON line {"check":"callbacks","ok":...}; exit 0 if every --until status arrived and checked out
`

const { values: o } = args({
  port: { type: 'string', default: '0' },
  path: { type: 'string', default: '/callback' },
  'ready-file': { type: 'string' },
  txid: { type: 'string' },
  until: { type: 'string', default: 'MINED' },
  token: { type: 'string' },
  'fail-first': { type: 'string', default: '0' },
  root: { type: 'string' },
  base: { type: 'string' },
  network: { type: 'string', default: 'regtest' },
  timeout: { type: 'string', default: '120' },
  help: { type: 'boolean' }
}, USAGE)

let txid, root
try {
  txid = o.txid === undefined ? undefined : needTxid(o.txid, '--txid')
  root = o.root === undefined ? undefined : needTxid(o.root, '--root')
} catch (e) {
  if (e instanceof UsageError) { process.stderr.write(`${e.message}\n`); process.exit(2) }
  throw e
}
const until = o.until.split(',').map((s) => s.trim().toUpperCase()).filter(Boolean)
const failFirst = Number(o['fail-first'])
const t0 = Date.now()
const requests = [] // every request, as received
const statuses = new Map() // status -> first checked callback object
const problems = []

async function checkMined (cb) {
  const c = { merklePath: typeof cb.merklePath === 'string' && cb.merklePath.length > 0 }
  if (!c.merklePath) { c.error = 'MINED without merklePath'; return c }
  try {
    const mp = MerklePath.fromHex(cb.merklePath)
    c.blockHeight = mp.blockHeight
    c.root = mp.computeRoot(cb.txid)
    if (root !== undefined && c.root !== root) c.error = `computeRoot = ${c.root}, expected ${root}`
    if (cb.blockHeight !== undefined && cb.blockHeight !== mp.blockHeight) c.error = `callback blockHeight ${cb.blockHeight} != BUMP blockHeight ${mp.blockHeight}`
    if (typeof cb.blockHash !== 'string' || cb.blockHash.length !== 64) c.error = c.error ?? 'blockHash missing'
    if (o.base !== undefined && c.error === undefined) {
      const tracker = new ConduitWhatsOnChain(wocBase(o.base.replace(/\/+$/, ''), o.network), o.network)
      c.verify = await mp.verify(cb.txid, tracker)
      c.tracker_calls = tracker.calls
      if (c.verify !== true) c.error = 'MerklePath.verify(txid, tracker) is false'
    }
  } catch (e) {
    c.error = `MerklePath: ${e.message}`
  }
  return c
}

async function handle (req, body) {
  const rec = {
    t_ms: Date.now() - t0,
    method: req.method,
    url: req.url,
    content_type: req.headers['content-type'] ?? null,
    authorization: req.headers.authorization ?? null
  }
  requests.push(rec)
  if (req.method !== 'POST' || req.url.split('?')[0] !== o.path) {
    rec.answer = 404
    return rec.answer
  }
  if (requests.filter((r) => r.method === 'POST').length <= failFirst) {
    rec.answer = 503
    return rec.answer
  }
  if (o.token !== undefined && rec.authorization !== `Bearer ${o.token}`) {
    rec.answer = 401
    problems.push(`request ${requests.length}: Authorization ${JSON.stringify(rec.authorization)}`)
    return rec.answer
  }
  let doc
  try {
    doc = JSON.parse(body)
  } catch (e) {
    rec.answer = 400
    problems.push(`request ${requests.length}: body is not JSON: ${body.slice(0, 100)}`)
    return rec.answer
  }
  const batch = doc !== null && typeof doc === 'object' && Array.isArray(doc.callbacks)
  rec.batched = batch
  rec.callbacks = batch ? doc.callbacks : [doc]
  if (batch && doc.count !== doc.callbacks.length) problems.push(`batch count ${doc.count} != ${doc.callbacks.length} callbacks`)
  for (const cb of rec.callbacks) {
    if (typeof cb?.txid !== 'string' || typeof cb?.txStatus !== 'string' || typeof cb?.timestamp !== 'string') {
      problems.push(`callback without txid/txStatus/timestamp: ${JSON.stringify(cb).slice(0, 200)}`)
      continue
    }
    if (txid !== undefined && cb.txid !== txid) continue
    const st = cb.txStatus.toUpperCase()
    const entry = { callback: cb }
    if (st === 'MINED') entry.check = await checkMined(cb)
    if (!statuses.has(st) || (statuses.get(st).check?.error && !entry.check?.error)) statuses.set(st, entry)
  }
  rec.answer = 200
  return rec.answer
}

function done () {
  return until.every((s) => statuses.has(s) && statuses.get(s).check?.error === undefined)
}

const server = createServer((req, res) => {
  const chunks = []
  let size = 0
  req.on('data', (c) => { size += c.length; if (size <= 8 << 20) chunks.push(c) })
  req.on('end', () => {
    handle(req, Buffer.concat(chunks).toString('utf8')).then((code) => {
      res.writeHead(code, { 'Content-Type': 'application/json' })
      res.end(JSON.stringify({ ok: code === 200 }))
      if (done()) stop(true)
    }, (e) => {
      problems.push(`handler: ${e.message}`)
      res.writeHead(500).end()
    })
  })
})

let stopped = false
function stop (complete) {
  if (stopped) return
  stopped = true
  server.close()
  const got = Object.fromEntries([...statuses].map(([k, v]) => [k, v]))
  finish({
    check: 'callbacks',
    ok: complete && problems.length === 0 && done(),
    txid: txid ?? null,
    until,
    complete,
    elapsed_ms: Date.now() - t0,
    statuses: got,
    problems,
    requests
  })
}

server.listen(Number(o.port), '127.0.0.1', () => {
  const url = `http://127.0.0.1:${server.address().port}${o.path}`
  process.stderr.write(JSON.stringify({ event: 'listening', url }) + '\n')
  if (o['ready-file']) writeFileSync(o['ready-file'], JSON.stringify({ url }) + '\n')
})
setTimeout(() => stop(false), Number(o.timeout) * 1000).unref()
process.on('SIGTERM', () => stop(false))
process.on('SIGINT', () => stop(false))
