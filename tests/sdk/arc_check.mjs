#!/usr/bin/env node
// arc_check.mjs - broadcast through conduitd's ARC-compatible API with the
// published @bsv/sdk: tx.broadcast(new ARC('<base>/arc', config)).
//
// Builds a transaction spending one output (given private key, source tx,
// vout), signs it with the SDK (SIGHASH_ALL|FORKID), checks its script
// locally with the SDK's interpreter (Spend), broadcasts it and expects a
// BroadcastResponse whose txStatus is SEEN_ON_NETWORK (by default). Then
// builds a second transaction spending the same output to another amount and
// expects the SDK's BroadcastFailure. Finally GETs <base>/arc/v1/tx/<txid>.
//
// The source output may be P2PKH (compressed or uncompressed key) or P2PK.
// The SDK's P2PKH template signs with the compressed key; for the other two
// the unlocking script is assembled here from the same SDK primitives
// (TransactionSignature.format preimage, PrivateKey.sign over its sha256).

import {
  ARC, Beef, P2PKH, PrivateKey, Spend, Transaction, TransactionSignature,
  UnlockingScript, Hash, Utils
} from '@bsv/sdk'
import {
  args, run, http, trimBase, needTxid, hexToBytes, bytesToHex, UsageError
} from './lib/harness.mjs'

const USAGE = `
usage: node tests/sdk/arc_check.mjs --base URL --wif WIF --vout N (--source-hex HEX | --source-beef HEX | --source-txid TXID) [options]
  --base URL            conduitd HTTP API (http://127.0.0.1:8085); the broadcaster is new ARC('<base>/arc', ...)
  --wif WIF             private key of the output (compressed or uncompressed WIF, any prefix)
  --key-hex HEX         ... or the private key as 32 bytes hex
  --source-hex HEX      the raw source transaction
  --source-beef HEX     ... or a BEEF (V1/V2/atomic) whose subject is the source (keeps its proof)
  --source-txid TXID    ... or fetch the raw source from <base>/v1/tx/<txid>
  --vout N              the output to spend
  --amount SATS         value of the new output (default: the input's value minus --fee)
  --fee SATS            fee when --amount is not given (default 200)
  --api-key KEY         ArcConfig.apiKey (sent as Authorization: Bearer KEY)
  --callback-url URL    ArcConfig.callbackUrl (X-CallbackUrl)
  --callback-token TOK  ArcConfig.callbackToken (X-CallbackToken)
  --header NAME:VALUE   ArcConfig.headers (repeatable), e.g. X-WaitFor:SEEN_ON_NETWORK
  --raw                 send the plain raw tx (the SDK sends Extended Format when it knows the source tx)
  --expect-status S     txStatus the first broadcast must return (default SEEN_ON_NETWORK)
  --no-double-spend     skip the double spend
  --expect-ds-code C    the double spend's BroadcastFailure.code must be C (e.g. DOUBLE_SPEND_ATTEMPTED)
  --no-status           skip GET <base>/arc/v1/tx/<txid>
prints one JSON line {"check":"arc","ok":...}; exit 0 if both broadcasts answered as expected
`

const { values: o } = args({
  base: { type: 'string' },
  wif: { type: 'string' },
  'key-hex': { type: 'string' },
  'source-hex': { type: 'string' },
  'source-beef': { type: 'string' },
  'source-txid': { type: 'string' },
  vout: { type: 'string' },
  amount: { type: 'string' },
  fee: { type: 'string', default: '200' },
  'api-key': { type: 'string' },
  'callback-url': { type: 'string' },
  'callback-token': { type: 'string' },
  header: { type: 'string', multiple: true, default: [] },
  raw: { type: 'boolean' },
  'expect-status': { type: 'string', default: 'SEEN_ON_NETWORK' },
  'no-double-spend': { type: 'boolean' },
  'expect-ds-code': { type: 'string' },
  'no-status': { type: 'boolean' },
  help: { type: 'boolean' }
}, USAGE)

/** {key, compressed} from a WIF (33-byte payload = compressed, 32 = uncompressed) or hex. */
function privateKey () {
  if (o['key-hex'] !== undefined) {
    if (!/^[0-9a-fA-F]{64}$/.test(o['key-hex'])) throw new UsageError('--key-hex: 64 hex digits')
    return { key: new PrivateKey(o['key-hex'], 16), compressed: true }
  }
  if (o.wif === undefined) throw new UsageError('--wif or --key-hex is required')
  const { data } = Utils.fromBase58Check(o.wif)
  if (data.length === 33 && data[32] === 1) return { key: PrivateKey.fromWif(o.wif), compressed: true }
  if (data.length === 32) return { key: new PrivateKey(Array.from(data)), compressed: false }
  throw new UsageError('--wif: not a WIF private key')
}

async function sourceTransaction (base) {
  const given = ['source-hex', 'source-beef', 'source-txid'].filter((k) => o[k] !== undefined)
  if (given.length !== 1) throw new UsageError('give exactly one of --source-hex, --source-beef, --source-txid')
  if (o['source-hex'] !== undefined) return Transaction.fromHex(o['source-hex'].trim())
  if (o['source-beef'] !== undefined) {
    const bin = Array.from(hexToBytes(o['source-beef']))
    const beef = Beef.fromBinary(bin)
    return beef.atomicTxid !== undefined ? Transaction.fromAtomicBEEF(bin) : Transaction.fromBEEF(bin)
  }
  const txid = needTxid(o['source-txid'], '--source-txid')
  const res = await http(`${base}/v1/tx/${txid}`)
  if (res.status !== 200) throw new Error(`GET /v1/tx/${txid}: HTTP ${res.status} ${res.text.slice(0, 200)}`)
  return Transaction.fromHex(res.text.trim())
}

/** The unlocking template for the source output's locking script. */
function unlocker (key, lockingScript) {
  const s = lockingScript.toBinary()
  const pubC = key.toPublicKey().encode(true)
  const pubU = key.toPublicKey().encode(false)
  const eq = (a, b) => a.length === b.length && a.every((x, i) => x === b[i])
  const isP2PKH = s.length === 25 && s[0] === 0x76 && s[1] === 0xa9 && s[2] === 0x14 && s[23] === 0x88 && s[24] === 0xac
  if (isP2PKH) {
    const h = s.slice(3, 23)
    if (eq(h, Hash.hash160(pubC))) return { kind: 'p2pkh', template: new P2PKH().unlock(key) }
    if (eq(h, Hash.hash160(pubU))) return { kind: 'p2pkh-uncompressed', template: signWith(key, [pubU]) }
    throw new UsageError('the output is P2PKH to another key than --wif')
  }
  for (const pub of [pubC, pubU]) {
    if (s.length === pub.length + 2 && s[0] === pub.length && eq(s.slice(1, 1 + pub.length), pub) && s[s.length - 1] === 0xac) {
      return { kind: 'p2pk', template: signWith(key, []) }
    }
  }
  throw new UsageError(`cannot spend this locking script with --wif: ${bytesToHex(s)}`)
}

/** Unlocking template: <sig ALL|FORKID> followed by the given pushes. */
function signWith (key, pushes) {
  return {
    sign: async (tx, i) => {
      const input = tx.inputs[i]
      const src = input.sourceTransaction.outputs[input.sourceOutputIndex]
      const scope = TransactionSignature.SIGHASH_ALL | TransactionSignature.SIGHASH_FORKID
      const preimage = TransactionSignature.format({
        sourceTXID: input.sourceTXID ?? input.sourceTransaction.id('hex'),
        sourceOutputIndex: input.sourceOutputIndex,
        sourceSatoshis: src.satoshis,
        transactionVersion: tx.version,
        otherInputs: tx.inputs.filter((_, j) => j !== i),
        inputIndex: i,
        outputs: tx.outputs,
        inputSequence: input.sequence ?? 0xffffffff,
        subscript: src.lockingScript,
        lockTime: tx.lockTime,
        scope
      })
      const raw = key.sign(Hash.sha256(preimage))
      const sig = new TransactionSignature(raw.r, raw.s, scope).toChecksigFormat()
      return new UnlockingScript([sig, ...pushes].map((d) => ({ op: d.length, data: d })))
    },
    estimateLength: async () => 108
  }
}

/** A signed 1-in 1-out tx paying `value` to the key's own P2PKH. */
async function build (src, vout, tmpl, key, value) {
  const tx = new Transaction()
  tx.addInput({ sourceTransaction: src, sourceOutputIndex: vout, unlockingScriptTemplate: tmpl, sequence: 0xffffffff })
  tx.addOutput({ lockingScript: new P2PKH().lock(Hash.hash160(key.toPublicKey().encode(true))), satoshis: value })
  await tx.sign()
  return tx
}

/** The SDK's own script interpreter on input 0. */
function scriptCheck (tx) {
  const input = tx.inputs[0]
  const src = input.sourceTransaction.outputs[input.sourceOutputIndex]
  try {
    return new Spend({
      sourceTXID: input.sourceTransaction.id('hex'),
      sourceOutputIndex: input.sourceOutputIndex,
      sourceSatoshis: src.satoshis,
      lockingScript: src.lockingScript,
      transactionVersion: tx.version,
      otherInputs: [],
      outputs: tx.outputs,
      unlockingScript: input.unlockingScript,
      inputSequence: input.sequence,
      inputIndex: 0,
      lockTime: tx.lockTime
    }).validate()
  } catch (e) {
    return `failed: ${e.message}`
  }
}

/** --raw: drop the source tx after signing so ARC.broadcast falls back to tx.toHex(). */
function forgetSource (tx) {
  for (const input of tx.inputs) {
    input.sourceTXID = input.sourceTXID ?? input.sourceTransaction.id('hex')
    input.sourceTransaction = undefined
  }
}

function arcConfig () {
  const headers = {}
  for (const h of o.header) {
    const i = h.indexOf(':')
    if (i <= 0) throw new UsageError(`--header ${h}: NAME:VALUE expected`)
    headers[h.slice(0, i).trim()] = h.slice(i + 1).trim()
  }
  const c = { headers }
  if (o['api-key'] !== undefined) c.apiKey = o['api-key']
  if (o['callback-url'] !== undefined) c.callbackUrl = o['callback-url']
  if (o['callback-token'] !== undefined) c.callbackToken = o['callback-token']
  return c
}

run('arc', async () => {
  const base = trimBase(o.base)
  const vout = Number(o.vout)
  if (!Number.isInteger(vout) || vout < 0) throw new UsageError('--vout N is required')
  const { key, compressed } = privateKey()
  const src = await sourceTransaction(base)
  const out = { check: 'arc', ok: false, arc_url: `${base}/arc`, source_txid: src.id('hex'), vout, wif_compressed: compressed }
  const fail = (why) => { out.error = why; return out }
  const srcOut = src.outputs[vout]
  if (srcOut === undefined) throw new UsageError(`the source has no output ${vout}`)
  out.input_satoshis = srcOut.satoshis
  const value = o.amount !== undefined ? Number(o.amount) : srcOut.satoshis - Number(o.fee)
  if (!Number.isInteger(value) || value < 1 || value > srcOut.satoshis) throw new UsageError(`output value ${value} does not fit the input's ${srcOut.satoshis}`)
  const { kind, template } = unlocker(key, srcOut.lockingScript)
  out.spends = kind

  const tx = await build(src, vout, template, key, value)
  out.txid = tx.id('hex')
  out.local_script_check = scriptCheck(tx)
  if (out.local_script_check !== true) return fail(`the SDK's interpreter rejects our own signature: ${out.local_script_check}`)
  if (o.raw) forgetSource(tx)
  out.format = o.raw ? 'raw' : 'ef'
  const arc = new ARC(`${base}/arc`, arcConfig())
  const r1 = await tx.broadcast(arc)
  out.broadcast = r1
  if (r1.status !== 'success') return fail(`broadcast: ${r1.code} ${r1.description}`)
  out.txStatus = (r1.message ?? '').split(' ')[0]
  if (r1.txid !== out.txid) return fail(`ARC answered txid ${r1.txid}, we sent ${out.txid}`)
  if (out.txStatus !== o['expect-status']) return fail(`txStatus ${out.txStatus}, expected ${o['expect-status']}`)

  if (!o['no-status']) {
    const h = {}
    if (o['api-key'] !== undefined) h.Authorization = `Bearer ${o['api-key']}`
    const res = await http(`${base}/arc/v1/tx/${out.txid}`, { headers: h })
    out.status_get = { http: res.status, content_type: res.contentType }
    try { out.status_get.body = JSON.parse(res.text) } catch { out.status_get.body = res.text.slice(0, 300) }
    if (res.status !== 200) return fail(`GET /arc/v1/tx/${out.txid}: HTTP ${res.status}`)
    if (out.status_get.body?.txid !== out.txid) return fail('GET /arc/v1/tx/<txid>: txid field differs')
  }

  if (!o['no-double-spend']) {
    const ds = await build(src, vout, unlocker(key, srcOut.lockingScript).template, key, value - 1)
    if (o.raw) forgetSource(ds)
    const r2 = await ds.broadcast(arc)
    out.double_spend = { txid: ds.id('hex'), response: r2 }
    if (r2.status !== 'error') return fail('the double spend was accepted')
    if (o['expect-ds-code'] !== undefined && r2.code !== o['expect-ds-code']) {
      return fail(`double spend: code ${r2.code}, expected ${o['expect-ds-code']}`)
    }
  }
  out.ok = true
  return out
})
