"""CSV connector sync throughput: the real ``run-connector-task`` flow against a raw load.

``python -m benchmarks.connectors`` writes a deterministic N-row shop-catalogue CSV, then loads it
with the Sluice flow (an onDemand ``replace`` task) and with a baseline (pandas chunks, vectorised
types, raw ``engine.bulk``), each in its own child process so that its RSS is its own.
See benchmarks/README.md.
"""
