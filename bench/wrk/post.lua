-- wrk script of bench/run: POST one JSON body with headers, and print a JSON summary.
-- Environment: BENCH_BODY_FILE (the body), BENCH_AUTHORIZATION (optional header value),
-- BENCH_ACCEPT_ENCODING (optional: e.g. "gzip", to measure compressed responses),
-- BENCH_RESULT_LOG (optional: a file the summary line is appended to, e.g. for its bytes).

local function read_file(path)
  local file = assert(io.open(path, "rb"))
  local content = file:read("*a")
  file:close()
  return content
end

wrk.method = "POST"
wrk.body = read_file(os.getenv("BENCH_BODY_FILE"))
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
local authorization = os.getenv("BENCH_AUTHORIZATION")
if authorization ~= nil and authorization ~= "" then
  wrk.headers["Authorization"] = authorization
end
local accept_encoding = os.getenv("BENCH_ACCEPT_ENCODING")
if accept_encoding ~= nil and accept_encoding ~= "" then
  wrk.headers["Accept-Encoding"] = accept_encoding
end

function done(summary, latency, requests)
  local errors = summary.errors
  local line = string.format(
    "BENCH_RESULT {\"requests\": %d, \"duration_us\": %d, \"bytes\": %d, "
      .. "\"errors_connect\": %d, \"errors_read\": %d, \"errors_write\": %d, "
      .. "\"errors_status\": %d, \"errors_timeout\": %d, "
      .. "\"p50_us\": %.0f, \"p99_us\": %.0f, \"mean_us\": %.1f, \"max_us\": %.0f}\n",
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max)
  io.write(line)
  local log_path = os.getenv("BENCH_RESULT_LOG")
  if log_path ~= nil and log_path ~= "" then
    local log = assert(io.open(log_path, "a"))
    log:write(line)
    log:close()
  end
end
