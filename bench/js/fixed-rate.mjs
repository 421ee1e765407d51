// Open-loop load at a fixed request rate, for the p99 latency of bench/waf_bench.
//
// usage: WAFBENCH_BASIC=... WAFBENCH_BODY=... node fixed-rate.mjs URL RATE SECONDS [CONNECTIONS]
//
// Request i is due at t0 + i/RATE whatever happened to the earlier ones (open loop), sent
// on a pool of at most CONNECTIONS (default 32) keep-alive connections, and its latency is
// counted from the time it was due, not from when it was written: a stalled server or a
// late timer shows up in the latency instead of silently lowering the rate (no coordinated
// omission). A warm-up second at the same rate is not counted. Every answer must be 200.
// Prints a human line and a last line "fixed-rate-result {json}".
//
// Why not autocannon -R: autocannon (9.0.0) gives each connection a budget of R/connections
// requests per second, refilled by a 1 s timer, so the load comes as a burst at the start
// of each second, and its coordinated-omission correction assumes a 1 ms interval per
// connection; the percentiles describe neither a steady 1,000 requests/s nor the real waits.
import http from 'node:http';

const [url, rateArg, secondsArg, connArg] = process.argv.slice(2);
const rate = Number(rateArg);
const seconds = Number(secondsArg);
const conns = Number(connArg || 32);
const basic = process.env.WAFBENCH_BASIC;
const body = process.env.WAFBENCH_BODY || 'grant_type=client_credentials';
if (!url || !(rate > 0) || !(seconds > 0) || !(conns >= 1) || !basic) {
  console.error('usage: WAFBENCH_BASIC=... node fixed-rate.mjs URL RATE SECONDS [CONNECTIONS]');
  process.exit(2);
}

const warmup = Math.ceil(rate); // one second, not counted
const total = warmup + Math.round(rate * seconds);
const agent = new http.Agent({ keepAlive: true, maxSockets: conns, maxFreeSockets: conns });
const target = new URL(url);
const headers = {
  'Content-Type': 'application/x-www-form-urlencoded',
  'Content-Length': Buffer.byteLength(body),
  Authorization: `Basic ${basic}`,
};
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

const latency = new Float64Array(total - warmup);
const sendLag = new Float64Array(total - warmup);
let done = 0;
let notOk = 0;
let firstBad = '';
let counted = 0;

function finish(i, due, ok, what) {
  const k = i - warmup;
  if (k >= 0) {
    latency[k] = nowMs() - due;
    counted++;
    if (!ok) {
      notOk++;
      if (!firstBad) firstBad = what;
    }
  }
  if (++done === total) report();
}

function fire(i, due) {
  const k = i - warmup;
  if (k >= 0) sendLag[k] = nowMs() - due;
  const req = http.request(
    { host: target.hostname, port: target.port, path: target.pathname, method: 'POST', headers, agent },
    (res) => {
      res.on('data', () => {});
      res.on('end', () => finish(i, due, res.statusCode === 200, `status ${res.statusCode}`));
    },
  );
  req.setTimeout(10000, () => req.destroy(new Error('timeout')));
  req.on('error', (e) => finish(i, due, false, e.message));
  req.end(body);
}

const interval = 1000 / rate;
const t0 = nowMs() + 50;
const start = t0 + warmup * interval;
let next = 0;
function pump() {
  const now = nowMs();
  while (next < total && t0 + next * interval <= now) {
    fire(next, t0 + next * interval);
    next++;
  }
  if (next < total) setTimeout(pump, Math.max(0, t0 + next * interval - nowMs()));
}
setTimeout(pump, 50);

function pct(sorted, p) {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function report() {
  const elapsed = (nowMs() - start) / 1000;
  const lat = Float64Array.from(latency).sort();
  const lag = Float64Array.from(sendLag).sort();
  const r = (x) => Math.round(x * 1000) / 1000;
  const res = {
    rate,
    requests: counted,
    achieved_per_s: Math.round(counted / elapsed),
    not_200: notOk,
    first_not_200: firstBad,
    p50_ms: r(pct(lat, 50)),
    p90_ms: r(pct(lat, 90)),
    p99_ms: r(pct(lat, 99)),
    p999_ms: r(pct(lat, 99.9)),
    max_ms: r(lat[lat.length - 1]),
    send_lag_p99_ms: r(pct(lag, 99)),
  };
  console.log(
    `  ${counted} requests due at ${rate}/s over ${elapsed.toFixed(1)} s (up to ${conns} connections):` +
      ` p50 ${res.p50_ms} ms, p90 ${res.p90_ms} ms, p99 ${res.p99_ms} ms, p99.9 ${res.p999_ms} ms,` +
      ` max ${res.max_ms} ms; generator's own send lag p99 ${res.send_lag_p99_ms} ms; not 200: ${notOk}`,
  );
  console.log(`fixed-rate-result ${JSON.stringify(res)}`);
  agent.destroy();
}
