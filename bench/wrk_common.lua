-- Shared by the benchmarks' wrk scripts (dofile'd from the project root): a number per thread
-- (`tid`, to keep the threads' IDs apart) and wrk's summary as one JSON line, which
-- bench.support.run_wrk reads.
function setup(thread)
  local next_tid = (_G.next_tid or 0) + 1
  _G.next_tid = next_tid
  thread:set("tid", next_tid)
end

function done(summary, latency, requests)
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"status_errors":%d,"connect_errors":%d,'
    .. '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, latency:percentile(50), latency:percentile(99)))
end
