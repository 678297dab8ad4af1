"""Developer scripts: make run, the benchmarks, the export verifier (type-checked by make lint)."""
