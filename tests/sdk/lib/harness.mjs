// harness.mjs - what the SDK check scripts share: command lines, HTTP, the
// one-line JSON result, and the SDK's own WhatsOnChain ChainTracker pointed at
// conduitd instead of api.whatsonchain.com.
//
// Every script prints exactly one JSON line on stdout (its result) and exits 0
// when every check passed, 1 when a check failed, 2 on a usage error.
// Diagnostics go to stderr.

import { parseArgs } from 'node:util'
import { WhatsOnChain } from '@bsv/sdk'

export class UsageError extends Error {}

/** parseArgs with our conventions: unknown options are usage errors. */
export function args (options, usage) {
  try {
    const { values, positionals } = parseArgs({ options, allowPositionals: true, strict: true })
    if (values.help) {
      process.stdout.write(usage.trimStart())
      process.exit(0)
    }
    return { values, positionals }
  } catch (e) {
    process.stderr.write(`${e.message}\n${usage}`)
    process.exit(2)
  }
}

/** Print the result line and exit with 0 (ok) or 1. */
export function finish (result) {
  process.stdout.write(JSON.stringify(result) + '\n')
  process.exit(result.ok ? 0 : 1)
}

/** Run main(); an exception becomes {ok: false, error} (exit 1), a UsageError exit 2. */
export function run (check, main) {
  main().then(finish, (e) => {
    if (e instanceof UsageError) {
      process.stderr.write(`${e.message}\n`)
      process.exit(2)
    }
    const cause = e?.cause?.code ?? e?.cause?.message
    const error = String(e?.message ?? e) + (cause ? ` (${cause})` : '')
    finish({ check, ok: false, error, stack: e?.stack?.split('\n').slice(1, 4) })
  })
}

export const HEX64 = /^[0-9a-fA-F]{64}$/

export function needTxid (t, what = 'txid') {
  if (!HEX64.test(t ?? '')) throw new UsageError(`${what}: 64 hex digits expected, got ${JSON.stringify(t)}`)
  return t.toLowerCase()
}

export function trimBase (url) {
  if (!url) throw new UsageError('--base URL is required (conduitd HTTP API, e.g. http://127.0.0.1:8085)')
  return url.replace(/\/+$/, '')
}

/**
 * GET (or other method) a URL; returns {status, contentType, text, bytes}.
 * Never throws on HTTP status; throws on connection errors.
 */
export async function http (url, init = {}) {
  const res = await fetch(url, init)
  const buf = new Uint8Array(await res.arrayBuffer())
  return {
    status: res.status,
    contentType: res.headers.get('content-type') ?? '',
    headers: res.headers,
    bytes: buf,
    text: new TextDecoder().decode(buf)
  }
}

export function hexToBytes (hex) {
  const h = hex.trim()
  if (h.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(h)) throw new Error(`not hex: ${h.slice(0, 40)}...`)
  return Uint8Array.from(h.match(/../g) ?? [], (b) => parseInt(b, 16))
}

export function bytesToHex (b) {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('')
}

/** The body of a hex-or-binary answer as bytes (octet-stream: raw; otherwise hex text). */
export function bodyBytes (r) {
  if (r.contentType.startsWith('application/octet-stream')) return r.bytes
  return hexToBytes(r.text)
}

/** conduitd's WhatsOnChain-compatible base: <base>/woc/v1/bsv/<network>. */
export function wocBase (base, network = 'regtest') {
  return `${base}/woc/v1/bsv/${network}`
}

/**
 * The SDK's own WhatsOnChain ChainTracker, unchanged, except for its base URL.
 *
 * @bsv/sdk 2.1.0 has no option for the base URL: the constructor hard-codes
 * `https://api.whatsonchain.com/v1/bsv/${network}` into the `URL` field
 * (TypeScript `protected readonly`, a plain writable field in the shipped JS),
 * and both methods request `${this.URL}/block/...`. So we set that field after
 * super() and keep the SDK's isValidRootForHeight / currentHeight logic. The
 * overrides only record each call (arguments, result or error) for the report.
 */
export class ConduitWhatsOnChain extends WhatsOnChain {
  constructor (url, network = 'regtest', config = {}) {
    super(network, config)
    this.URL = url
    this.calls = []
  }

  async isValidRootForHeight (root, height) {
    const call = { method: 'isValidRootForHeight', url: `${this.URL}/block/${height}/header`, root, height }
    this.calls.push(call)
    try {
      call.result = await super.isValidRootForHeight(root, height)
      return call.result
    } catch (e) {
      call.error = String(e.message)
      throw e
    }
  }

  async currentHeight () {
    const call = { method: 'currentHeight', url: `${this.URL}/block/headers` }
    this.calls.push(call)
    try {
      call.result = await super.currentHeight()
      return call.result
    } catch (e) {
      call.error = String(e.message)
      throw e
    }
  }
}
