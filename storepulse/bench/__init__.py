"""`storepulse bench`: throughput, latency and cost of the worker against Faust's own ceiling."""
