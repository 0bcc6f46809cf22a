"""Benchmarks of Sluice's pipelines (``make bench``); see benchmarks/README.md."""
