-- wrk script of bench/run's `families` workload: each request a different family.
-- Environment: BENCH_FAMILIES_FILE (one family a line: "<Authorization>\t<JSON body>",
-- the authorization may be empty) and BENCH_SEQUENCE_FILE (family numbers, 1-based, one a
-- line: the seeded order both targets get) and BENCH_SEQUENCE_START (where in the sequence
-- to begin: bench/run gives warm-up and timed runs their own parts). Each wrk thread walks
-- the sequence from there (thread k an eighth of it further on) and wraps around; the
-- requests are built once per thread. Prints the same JSON summary as post.lua. With
-- BENCH_POSITIONS_FILE, done() also writes there one line per thread, "<start> <sent>": the
-- thread's first place in the sequence (0-based) and how many requests it sent, so
-- bench/run can replay which families a run asked for (bench.driver.families.CacheReplay).
-- BENCH_ACCEPT_ENCODING and BENCH_RESULT_LOG as in post.lua.

local function lines_of(path)
  local result = {}
  for line in io.lines(path) do
    if line ~= "" then
      result[#result + 1] = line
    end
  end
  return result
end

local thread_count = 0
local threads = {}

function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
  threads[#threads + 1] = thread
end

local requests = {}
local order = {}
local position = 0
-- Globals (thread:get reads globals): where this thread began and how many it sent.
first_position = 0
sent = 0

function init(args)
  local path = wrk.path
  for _, line in ipairs(lines_of(os.getenv("BENCH_FAMILIES_FILE"))) do
    local tab = string.find(line, "\t", 1, true)
    local authorization = string.sub(line, 1, tab - 1)
    local body = string.sub(line, tab + 1)
    local headers = {["Content-Type"] = "application/json", ["Accept"] = "application/json"}
    if authorization ~= "" then
      headers["Authorization"] = authorization
    end
    local accept_encoding = os.getenv("BENCH_ACCEPT_ENCODING") or ""
    if accept_encoding ~= "" then
      headers["Accept-Encoding"] = accept_encoding
    end
    requests[#requests + 1] = wrk.format("POST", path, headers, body)
  end
  for _, line in ipairs(lines_of(os.getenv("BENCH_SEQUENCE_FILE"))) do
    order[#order + 1] = tonumber(line)
  end
  local start = tonumber(os.getenv("BENCH_SEQUENCE_START") or "0") or 0
  position = (start + math.floor((thread_index or 0) * #order / 8)) % #order
  first_position = position
end

function request()
  sent = sent + 1
  position = position % #order + 1
  return requests[order[position]]
end

local function write_positions()
  local path = os.getenv("BENCH_POSITIONS_FILE") or ""
  if path == "" then
    return
  end
  local file = assert(io.open(path, "w"))
  for _, thread in ipairs(threads) do
    file:write(string.format("%d %d\n", thread:get("first_position"), thread:get("sent")))
  end
  file:close()
end

function done(summary, latency, requests)
  write_positions()
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
  local log_path = os.getenv("BENCH_RESULT_LOG") or ""
  if log_path ~= "" then
    local log = assert(io.open(log_path, "a"))
    log:write(line)
    log:close()
  end
end
