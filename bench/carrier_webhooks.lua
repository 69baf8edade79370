-- wrk script for bench/carriers_inbound.py: POST pre-signed carrier webhooks, each once.
-- $WRK_WEBHOOKS names a file of lines
--   path<TAB>content-type<TAB>header<TAB>value<TAB>header<TAB>value<TAB>body
-- (a header named "-" is left out: Twilio signs with one header, Telnyx with two);
-- thread k of n sends lines k, k+n, k+2n, ... so no two threads send the same event.
-- Requests are built once in init(): the load client's own CPU stays small.
local threads = {}
local requests = {}
local counter = 0

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  local n = tonumber(os.getenv("WRK_THREADS") or "1")
  local i = 0
  for line in io.lines(os.getenv("WRK_WEBHOOKS")) do
    if i % n == tid then
      local path, ctype, h1, v1, h2, v2, body =
        line:match("([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)")
      local headers = {["Content-Type"] = ctype, [h1] = v1}
      if h2 ~= "-" then headers[h2] = v2 end
      requests[#requests + 1] = wrk.format("POST", path, headers, body)
    end
    i = i + 1
  end
end

function request()
  -- past the end it wraps: a resent event is a duplicate (2xx without work), which the
  -- report flags (requests > lines) rather than counting it as throughput
  counter = counter + 1
  return requests[((counter - 1) % #requests) + 1]
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
