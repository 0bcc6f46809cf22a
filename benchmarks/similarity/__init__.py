"""Image-embedding benchmark (``python -m benchmarks.similarity``); see benchmarks/README.md."""
