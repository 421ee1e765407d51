-- wrk script of bench/waf_bench: one client_credentials token request per call, on
-- keep-alive connections, and an exact count of answers other than 200.
-- Environment: WAFBENCH_BASIC (base64 of "client_id:secret"), WAFBENCH_BODY (form body).
-- done() prints one line "wrk-result {json}" that waf_bench reads.

local basic = os.getenv("WAFBENCH_BASIC")
local body = os.getenv("WAFBENCH_BODY") or "grant_type=client_credentials"
assert(basic and basic ~= "", "WAFBENCH_BASIC is not set")

-- A static request: wrk builds it once per thread (no request() hook, no per-call Lua).
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. basic

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

-- Per-thread state (each wrk thread runs its own Lua interpreter).
function init(args)
   not_ok = 0
   first_status = 0
end

-- wrk counts only status > 399 as an error; a token endpoint must answer 200.
function response(status, headers, body)
   if status ~= 200 then
      not_ok = not_ok + 1
      if first_status == 0 then first_status = status end
   end
end

function done(summary, latency, requests)
   local bad, first = 0, 0
   for _, t in ipairs(threads) do
      bad = bad + t:get("not_ok")
      local f = t:get("first_status")
      if first == 0 and f ~= 0 then first = f end
   end
   local e = summary.errors
   io.write(string.format(
      'wrk-result {"requests":%d,"duration_us":%d,"not_200":%d,"first_not_200":%d,' ..
      '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
      summary.requests, summary.duration, bad, first,
      e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
