-- wrk script of `bench/run.sh burst`: the tail beyond wrk's --latency percentiles, one line
-- parsed by the script: "tail p99=MS p99.5=MS p99.9=MS max=MS" (wrk's latency is in µs).
done = function(summary, latency, requests)
    io.write(string.format("tail p99=%.3f p99.5=%.3f p99.9=%.3f max=%.3f\n",
        latency:percentile(99) / 1000, latency:percentile(99.5) / 1000,
        latency:percentile(99.9) / 1000, latency.max / 1000))
end
