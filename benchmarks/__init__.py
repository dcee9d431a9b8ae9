"""dagkeeper's benchmark suite: ``python -m benchmarks.run`` starts its own cluster, runs the
workloads and writes a JSON report (see benchmarks/README.md)."""
