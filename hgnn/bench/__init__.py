"""Benchmark harness: suites of models x datasets x seeds, resumable, aggregated beside the papers."""
