-- wrk script for bench/tail_latency.py: after the run, print the latency percentiles
-- wrk's own --latency table lacks (99.9%) and the error counts, one "name value" a line.
-- Latencies are wrk's, in microseconds, from a request's send to its response's end.
done = function(summary, latency, requests)
  for _, p in ipairs({ 50, 90, 99, 99.9 }) do
    io.write(string.format("percentile %g %d\n", p, latency:percentile(p)))
  end
  io.write(string.format("max %d\n", latency.max))
  io.write(string.format("requests %d\n", summary.requests))
  io.write(string.format("duration_us %d\n", summary.duration))
  local errors = summary.errors
  io.write(string.format("errors %d %d %d %d %d\n", errors.connect, errors.read,
    errors.write, errors.status, errors.timeout))
end
