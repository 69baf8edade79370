-- wrk script for bench/carriers_inbound.py: POST pre-signed Telnyx webhooks, each once.
-- $WRK_WEBHOOKS names a file of "signature<TAB>timestamp<TAB>body" lines; thread k of n
-- sends lines k, k+n, k+2n, ... so no two threads send the same event.
local threads = {}
local lines = {}
local counter = 0

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  local n = tonumber(os.getenv("WRK_THREADS") or "1")
  local i = 0
  for line in io.lines(os.getenv("WRK_WEBHOOKS")) do
    if i % n == tid then lines[#lines + 1] = line end
    i = i + 1
  end
end

function request()
  counter = counter + 1
  local line = lines[((counter - 1) % #lines) + 1]
  local sig, ts, body = line:match("([^\t]+)\t([^\t]+)\t(.*)")
  return wrk.format("POST", "/webhooks/telnyx", {
    ["Content-Type"] = "application/json",
    ["telnyx-signature-ed25519"] = sig,
    ["telnyx-timestamp"] = ts,
  }, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "timeouts": %d, "non_2xx": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
