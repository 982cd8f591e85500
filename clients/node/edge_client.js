#!/usr/bin/env node
// A small Node.js client for the edge daemon. It loads the wire contract,
// protos/edge/v1/router.proto, at run time with @grpc/proto-loader: no generated
// code, the .proto file is the contract.
//
//   node edge_client.js [demo] [TARGET] [QUESTION...]  ask one question, print the answer,
//                                                     who served it and why
//   node edge_client.js selftest [TARGET]             every RPC once, one JSON object on stdout
//   node edge_client.js healthonly [TARGET]           grpc.health.v1 Health.Check only (no token needed)
//
// TARGET: host:port or unix:/path (default: $EDGE_TARGET, else 127.0.0.1:50051).
// EDGE_TOKEN: bearer token, sent as 'authorization: Bearer <token>' metadata.
// EDGE_PROTO_DIR or --protos DIR: the folder holding edge/v1/router.proto
// (default: the repository's protos/ folder, two levels above this file).
// EDGE_TIMEOUT_MS: deadline of each call (default 30000).
'use strict';

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const MODES = ['demo', 'selftest', 'healthonly'];

function parseArgs(argv) {
  const args = [...argv];
  let protoDir = process.env.EDGE_PROTO_DIR || path.resolve(__dirname, '..', '..', 'protos');
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--protos') {
      protoDir = args[i + 1];
      args.splice(i, 2);
      i--;
    } else if (args[i].startsWith('--protos=')) {
      protoDir = args[i].slice('--protos='.length);
      args.splice(i, 1);
      i--;
    }
  }
  const mode = MODES.includes(args[0]) ? args.shift() : 'demo';
  const target = args.shift() || process.env.EDGE_TARGET || '127.0.0.1:50051';
  const question = args.join(' ') || 'What is the capital of France?';
  return { mode, target, question, protoDir };
}

const opts = parseArgs(process.argv.slice(2));
const TIMEOUT_MS = Number(process.env.EDGE_TIMEOUT_MS || 30000);

// keepCase: field names as in the .proto (served_by, not servedBy); longs and enums
// as strings (uint64 counters arrive as "42", Tier as "TIER_LOCAL"); defaults: unset
// fields are present with their zero value; oneofs: a message with a oneof carries
// the name of the member that is set (GenerateStreamResponse.event = "delta" | "final" | "notice").
let packageDefinition;
try {
  packageDefinition = protoLoader.loadSync(
    ['edge/v1/router.proto', 'grpc/health/v1/health.proto'],
    { includeDirs: [opts.protoDir], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true },
  );
} catch (err) {
  console.error(`edge_client: cannot load the protos from ${opts.protoDir} (set EDGE_PROTO_DIR or --protos): ${err.message}`);
  process.exit(2);
}
const proto = grpc.loadPackageDefinition(packageDefinition);

const credentials = grpc.credentials.createInsecure();
const router = new proto.edge.v1.EdgeRouter(opts.target, credentials);
const health = new proto.grpc.health.v1.Health(opts.target, credentials);

function metadata() {
  const md = new grpc.Metadata();
  if (process.env.EDGE_TOKEN) md.add('authorization', `Bearer ${process.env.EDGE_TOKEN}`);
  return md;
}

const deadline = () => ({ deadline: Date.now() + TIMEOUT_MS });

// A unary call as a promise.
function call(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata(), deadline(), (err, response) => (err ? reject(err) : resolve(response)));
  });
}

// A server stream as a promise of all its messages; onMessage sees each as it arrives.
function collect(client, method, request, onMessage = () => {}) {
  return new Promise((resolve, reject) => {
    const messages = [];
    const stream = client[method](request, metadata(), deadline());
    stream.on('data', (msg) => { messages.push(msg); onMessage(msg); });
    stream.on('error', reject);
    stream.on('end', () => resolve(messages));
  });
}

function describeError(rpc, err) {
  const code = grpc.status[err.code] ?? String(err.code);  // grpc.status maps 3 <-> 'INVALID_ARGUMENT'
  return { rpc, code, code_number: err.code, details: err.details ?? err.message };
}

let current = 'Health.Check';  // the RPC in flight, named in the error report

const ask = (content, params = {}) => ({ messages: [{ role: 'user', content }], params });

function summary(r) {
  return {
    request_id: r.request_id,
    text: r.text,
    finish_reason: r.finish_reason,
    served_by: r.served_by,
    trace: r.trace,
    usage: r.usage,
    timings: r.timings,
    degraded: r.degraded,
    cost_usd: r.cost_usd,
  };
}

async function demo() {
  current = 'GenerateStream';
  // Stream the answer as it is generated; the last message carries the summary.
  let final = null;
  await collect(router, 'GenerateStream', ask(opts.question, { max_tokens: 128 }), (msg) => {
    if (msg.event === 'delta') process.stdout.write(msg.delta);
    else if (msg.event === 'notice') process.stderr.write(`\n[notice ${msg.notice.code}: ${msg.notice.detail}]\n`);
    else if (msg.event === 'final') final = msg.final;
  });
  if (!final) throw new Error('the stream ended without its final message');
  const { tier, backend, model } = final.served_by;
  console.log(`\n\nserved by ${backend}/${model} (${tier}) in ${final.timings.total_ms.toFixed(0)} ms, `
    + `${final.usage.completion_tokens} tokens${final.degraded ? ', degraded' : ''}`);
  for (const reason of final.trace) console.log(`  ${reason.code}: ${reason.detail}`);
}

async function healthonly(out) {
  current = 'Health.Check';
  out.health = (await call(health, 'Check', { service: '' })).status;
}

async function selftest(out) {
  await healthonly(out);
  out.health_router = (await call(health, 'Check', { service: 'edge.v1.EdgeRouter' })).status;
  current = 'Generate';
  out.unary = summary(await call(router, 'Generate', ask('Say hello.')));

  current = 'GenerateStream';
  const messages = await collect(router, 'GenerateStream', ask('Say hello, slowly.'));
  out.stream = {
    events: messages.map((m) => m.event),
    deltas: messages.filter((m) => m.event === 'delta').map((m) => m.delta),
    notices: messages.filter((m) => m.event === 'notice').map((m) => m.notice),
    final: summary(messages.filter((m) => m.event === 'final').map((m) => m.final)[0] ?? {}),
  };

  current = 'ListModels';
  const { models } = await call(router, 'ListModels', {});
  out.models = models.map(({ name, tier, backend, state, is_default, size_bytes }) => (
    { name, tier, backend, state, is_default, size_bytes }));

  current = 'GetStatus';
  const s = await call(router, 'GetStatus', {});
  out.status = {
    version: s.version, state: s.state, default_model: s.default_model, network: s.network,
    auth_required: s.auth_required, requests_total: s.models.map((m) => m.requests_total),
  };

  // One request the daemon must refuse: temperature outside [0, 2].
  current = 'Generate';
  try {
    await call(router, 'Generate', ask('Too hot.', { temperature: 9 }));
    out.invalid = { code: 'OK', details: 'the daemon accepted temperature 9' };
  } catch (err) {
    out.invalid = describeError('Generate', err);
  }
}

async function main() {
  if (opts.mode === 'demo') {
    await demo();
    return;
  }
  // selftest / healthonly: one JSON object on stdout, also when a call fails
  // (then with an "error" entry, the results so far, and exit status 1).
  const out = { target: opts.target, token_sent: Boolean(process.env.EDGE_TOKEN) };
  try {
    await (opts.mode === 'selftest' ? selftest(out) : healthonly(out));
  } catch (err) {
    out.error = describeError(current, err);
    console.log(JSON.stringify(out));
    throw err;
  }
  console.log(JSON.stringify(out));
}

main()
  .catch((err) => {
    if (err.code === undefined) {
      console.error(`edge_client: ${err.stack || err}`);
    } else {
      const e = describeError(current, err);
      console.error(`edge_client: ${e.rpc} failed: ${e.code} (${e.code_number}): ${e.details}`);
    }
    process.exitCode = 1;
  })
  .finally(() => {
    router.close();
    health.close();
  });
