#!/usr/bin/env node
// Reads the connector's output topics with kafkajs, decodes the Avro single-object encoding with
// avsc and nothing but the .avsc files, and judges each snapshot complete by order_count.
//
//   node consumer.js --bootstrap HOST:PORT --avro-dir ../../avro \
//        --orders-topic orders --results-topic order-query-results \
//        --request-id r-1 [--request-id r-2 ...] [--timeout-ms 60000] [--session-timeout-ms 6000]
//        [--account-status-topic account-status --status-key EXCHANGE:ACCOUNT ...]
//        [--order-changes-topic order-changes --change-key EXCHANGE:ACCOUNT:ORDER_ID ...]
//
// Prints one JSON line per request id (the summary the test suite checks) and exits 0 when every
// requested snapshot was judged (complete or FAILED) before the timeout, 1 otherwise. With the
// account-status and order-changes topics (docs/contract.md, "Freshness as data"), it also waits
// for a status per --status-key and a change per --change-key, and prints the account's last
// status (a compacted topic: the last record per key wins) and each order's changes.
//
// What a risk consumer must do, and this example does:
// - decode by fingerprint: C3 01, 8-byte little-endian CRC-64-AVRO of the schema's parsing
//   canonical form, then the Avro binary body (docs/consuming.md);
// - judge completeness by count: the QueryResult says order_count, and the snapshot is complete
//   once that many distinct order events (snapshot_seq 1..snapshot_size) with its request_id are
//   held. Never by arrival order: events and result live on different topics and partitions;
// - deduplicate on (request_id, order_id): delivery is at-least-once, a repeat carries the same
//   request_id and order ids with new event_ids.
'use strict';

const fs = require('fs');
const path = require('path');
const avro = require('avsc');
const { Kafka, logLevel } = require('kafkajs');

// --- CRC-64-AVRO (Avro spec, "Schema Fingerprints") --------------------------------------------
const EMPTY = 0xc15d213aa4d7a795n;
const MASK = (1n << 64n) - 1n;
const TABLE = (() => {
  const t = new Array(256);
  for (let i = 0; i < 256; i++) {
    let fp = BigInt(i);
    for (let j = 0; j < 8; j++) fp = (fp >> 1n) ^ (EMPTY & -(fp & 1n));
    t[i] = fp & MASK;
  }
  return t;
})();

function crc64avro(buf) {
  let fp = EMPTY;
  for (const byte of buf) fp = ((fp >> 8n) ^ TABLE[Number((fp ^ BigInt(byte)) & 0xffn)]) & MASK;
  return fp;
}

// --- schemas from the .avsc files alone --------------------------------------------------------
function fingerprintOf(type) {
  // avsc's schema() without options is the spec's parsing canonical form (logicalType, doc and
  // default attributes dropped, names full); the fingerprint is computed over its JSON text.
  return crc64avro(Buffer.from(JSON.stringify(type.schema()), 'utf8'));
}

function readType(file) {
  return avro.Type.forSchema(JSON.parse(fs.readFileSync(file, 'utf8')));
}

// The current schema, plus each released version (avro/released/<version>/) as a writer schema
// resolved to the current one, so records written by an earlier release still decode.
function loadSchema(avroDir, name) {
  const type = readType(path.join(avroDir, `${name}.avsc`));
  const writers = new Map([[fingerprintOf(type), null]]);
  const releasedDir = path.join(avroDir, 'released');
  const versions = fs.existsSync(releasedDir) ? fs.readdirSync(releasedDir) : [];
  for (const version of versions) {
    const file = path.join(releasedDir, version, `${name}.avsc`);
    if (!fs.existsSync(file)) continue;
    const writer = readType(file);
    const fp = fingerprintOf(writer);
    if (!writers.has(fp)) writers.set(fp, type.createResolver(writer));
  }
  return { name: type.name, type, fingerprint: fingerprintOf(type), writers };
}

class UnknownSchema extends Error {}

// Single-object encoding: C3 01 | fingerprint (8 bytes, little endian) | body.
function decodeSingleObject(buf, known) {
  if (buf.length < 10 || buf[0] !== 0xc3 || buf[1] !== 0x01) {
    // 00 + 4-byte id would be the Confluent registry framing: look the id up in the registry.
    throw new UnknownSchema(`not single-object encoded (first bytes ${buf.subarray(0, 2).toString('hex')})`);
  }
  const fp = buf.readBigUInt64LE(2);
  const schema = known.find((s) => s.writers.has(fp));
  if (!schema) throw new UnknownSchema(`unknown fingerprint ${fp.toString(16)}`);
  const resolver = schema.writers.get(fp); // null: written with the current schema
  return { schema: schema.name, value: schema.type.fromBuffer(buf.subarray(10), resolver || undefined) };
}

// --- arguments ---------------------------------------------------------------------------------
function parseArgs(argv) {
  const args = { requestIds: [], statusKeys: [], changeKeys: [], timeoutMs: 60000, sessionTimeoutMs: 30000 };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) throw new Error(`missing value for ${flag}`);
    switch (flag) {
      case '--bootstrap': args.bootstrap = value; break;
      case '--avro-dir': args.avroDir = value; break;
      case '--orders-topic': args.ordersTopic = value; break;
      case '--results-topic': args.resultsTopic = value; break;
      case '--request-id': args.requestIds.push(value); break;
      case '--account-status-topic': args.statusTopic = value; break;
      case '--order-changes-topic': args.changesTopic = value; break;
      case '--status-key': args.statusKeys.push(value); break;
      case '--change-key': args.changeKeys.push(value); break;
      case '--timeout-ms': args.timeoutMs = Number(value); break;
      case '--session-timeout-ms': args.sessionTimeoutMs = Number(value); break;
      default: throw new Error(`unknown option ${flag}`);
    }
  }
  for (const k of ['bootstrap', 'avroDir', 'ordersTopic', 'resultsTopic']) {
    if (!args[k]) throw new Error(`--${k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())} is required`);
  }
  if (!args.requestIds.length && !args.statusKeys.length && !args.changeKeys.length) {
    throw new Error('at least one --request-id, --status-key or --change-key is required');
  }
  if (args.statusKeys.length && !args.statusTopic) throw new Error('--status-key needs --account-status-topic');
  if (args.changeKeys.length && !args.changesTopic) throw new Error('--change-key needs --order-changes-topic');
  return args;
}

// Broker security from the environment (never from arguments, which other users can see):
// KAFKA_SECURITY_PROTOCOL = PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL, KAFKA_SASL_MECHANISM =
// PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SSL_CAFILE.
function securityFromEnv(env) {
  const protocol = (env.KAFKA_SECURITY_PROTOCOL || 'PLAINTEXT').toUpperCase();
  const out = {};
  if (protocol === 'SSL' || protocol === 'SASL_SSL') {
    out.ssl = env.KAFKA_SSL_CAFILE ? { ca: [fs.readFileSync(env.KAFKA_SSL_CAFILE, 'utf8')] } : true;
  }
  if (protocol.startsWith('SASL_')) {
    out.sasl = {
      mechanism: (env.KAFKA_SASL_MECHANISM || 'PLAIN').toLowerCase(),
      username: env.KAFKA_SASL_USERNAME || '',
      password: env.KAFKA_SASL_PASSWORD || '',
    };
  }
  return out;
}

// --- snapshot bookkeeping ----------------------------------------------------------------------
class Snapshot {
  constructor(requestId) {
    this.requestId = requestId;
    this.result = null; // the first QueryResult; a repeat must agree with it
    this.resultsSeen = 0;
    this.orders = new Map(); // order_id -> snapshot_seq (deduplicated)
    this.orderEventsSeen = 0;
    this.seqs = new Set();
    this.sizes = new Set();
  }

  addOrder(ev) {
    this.orderEventsSeen += 1;
    if (this.orders.has(ev.order_id)) return; // at-least-once repeat
    this.orders.set(ev.order_id, ev.snapshot_seq);
    this.seqs.add(ev.snapshot_seq);
    this.sizes.add(ev.snapshot_size);
  }

  addResult(r) {
    this.resultsSeen += 1;
    if (!this.result) this.result = r;
  }

  // Complete = result in, and order_count distinct orders with seqs exactly 1..order_count.
  get judged() {
    if (!this.result) return false;
    if (this.result.status === 'FAILED') return true; // FAILED publishes no order events
    return this.orders.size >= this.result.order_count;
  }

  get complete() {
    if (!this.result || this.result.status !== 'OK') return false;
    const n = this.result.order_count;
    if (this.orders.size !== n) return false;
    for (let s = 1; s <= n; s++) if (!this.seqs.has(s)) return false;
    return n === 0 || (this.sizes.size === 1 && this.sizes.has(n));
  }

  summary() {
    return {
      request_id: this.requestId,
      status: this.result ? this.result.status : null,
      error_code: this.result ? this.result.error_code : null,
      order_count: this.result ? this.result.order_count : null,
      results_seen: this.resultsSeen,
      order_events_seen: this.orderEventsSeen,
      distinct_orders: this.orders.size,
      complete: this.complete,
      order_ids: [...this.orders.keys()].sort(),
    };
  }
}

// --- freshness as data: account-status (compacted) and order-changes ---------------------------
// A risk engine joins open-orders with account-status on <exchange>:<account>: rows of a FRESH or
// FAILING account are open as of as_of; rows of a STALE, UNKNOWN or DISABLED account are unknown.
function statusSummary(key, s) {
  return {
    status_key: key,
    status: s.status,
    as_of: s.as_of === null ? null : Number(s.as_of),
    as_of_request_id: s.as_of_request_id,
    open_orders: s.open_orders,
    consecutive_failures: s.consecutive_failures,
    last_error_code: s.last_error_code,
    rows_are: s.status === 'FRESH' || s.status === 'FAILING' ? 'open' : 'unknown',
  };
}

function changeSummary(c) {
  return {
    change: c.change,
    changed_fields: c.changed_fields,
    detected_by: c.detected_by,
    before_status: c.before ? c.before.status : null,
    after_status: c.after ? c.after.status : null,
    seen_open_at: c.seen_open_at === null ? null : Number(c.seen_open_at),
  };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const orderEvent = loadSchema(args.avroDir, 'OrderEvent');
  const queryResult = loadSchema(args.avroDir, 'QueryResult');
  // Each .avsc is parsed on its own (OrderChange.avsc defines Side, OrderStatus, ... itself).
  const accountStatus = args.statusTopic ? loadSchema(args.avroDir, 'AccountStatus') : null;
  const orderChange = args.changesTopic ? loadSchema(args.avroDir, 'OrderChange') : null;
  const snapshots = new Map(args.requestIds.map((id) => [id, new Snapshot(id)]));
  const statuses = new Map(); // <exchange>:<account> -> the last AccountStatus (compacted topic)
  const changes = new Map(args.changeKeys.map((k) => [k, []])); // order key -> its changes
  const done = () => [...snapshots.values()].every((s) => s.judged)
    && args.statusKeys.every((k) => statuses.has(k))
    && args.changeKeys.every((k) => changes.get(k).length > 0);
  let undecodable = 0;

  const kafka = new Kafka({
    clientId: 'order-events-example-node',
    brokers: args.bootstrap.split(','),
    logLevel: logLevel.ERROR,
    ...securityFromEnv(process.env),
  });
  const consumer = kafka.consumer({
    groupId: `order-events-example-node-${process.pid}-${Date.now()}`,
    sessionTimeout: args.sessionTimeoutMs,
    heartbeatInterval: Math.max(500, Math.floor(args.sessionTimeoutMs / 6)),
  });

  let finish;
  const finished = new Promise((resolve) => { finish = resolve; });
  const timer = setTimeout(() => finish(false), args.timeoutMs);
  const QUIET_MS = 1000;
  let quiet;

  await consumer.connect();
  const topics = [args.ordersTopic, args.resultsTopic, args.statusTopic, args.changesTopic];
  await consumer.subscribe({ topics: topics.filter((t) => t), fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ topic, message }) => {
      if (!message.value) return;
      const expected = {
        [args.ordersTopic]: orderEvent,
        [args.resultsTopic]: queryResult,
        ...(args.statusTopic ? { [args.statusTopic]: accountStatus } : {}),
        ...(args.changesTopic ? { [args.changesTopic]: orderChange } : {}),
      }[topic];
      let decoded;
      try {
        decoded = decodeSingleObject(message.value, [expected]);
      } catch (err) {
        if (!(err instanceof UnknownSchema)) throw err;
        undecodable += 1; // e.g. a newer schema: a real consumer would fetch it, never drop silently
        return;
      }
      const key = message.key ? message.key.toString('utf8') : null;
      if (accountStatus && decoded.schema === accountStatus.name) {
        statuses.set(key, decoded.value);
      } else if (orderChange && decoded.schema === orderChange.name) {
        if (changes.has(key)) changes.get(key).push(decoded.value);
      } else {
        const snap = snapshots.get(decoded.value.request_id);
        if (!snap) return;
        if (decoded.schema === orderEvent.name) snap.addOrder(decoded.value);
        else snap.addResult(decoded.value);
      }
      // A compacted table is read to its end, not to its first record per key: once every
      // key is seen, finish after a quiet spell with no further record (the records a reader
      // wants are the last per key; they follow the first in the same partition).
      clearTimeout(quiet);
      if (done()) quiet = setTimeout(() => finish(true), QUIET_MS);
    },
  });

  const ok = await finished;
  clearTimeout(timer);
  clearTimeout(quiet);
  await consumer.disconnect();
  for (const snap of snapshots.values()) console.log(JSON.stringify(snap.summary()));
  for (const key of args.statusKeys) {
    const s = statuses.get(key);
    console.log(JSON.stringify(s ? statusSummary(key, s) : { status_key: key, status: null }));
  }
  for (const [key, list] of changes) {
    console.log(JSON.stringify({ change_key: key, changes: list.map(changeSummary) }));
  }
  console.log(JSON.stringify({
    summary: true,
    all_judged: ok,
    undecodable,
    fingerprints: {
      [orderEvent.name]: orderEvent.fingerprint.toString(16),
      [queryResult.name]: queryResult.fingerprint.toString(16),
    },
  }));
  process.exitCode = ok ? 0 : 1;
}

main().catch((err) => {
  console.error(`error: ${err.message}`);
  process.exit(2);
});
