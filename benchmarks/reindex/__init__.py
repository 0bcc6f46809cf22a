"""Reindex throughput: the real ``reindex`` flow against a raw load of the same documents.

``python -m benchmarks.reindex`` builds app databases of N synthetic ``image`` rows (replicated
from the shipped Openverse sample rows), then, per engine and size, times the Sluice flow and a
baseline (plain SQLAlchemy query + ``to_document`` + a raw bulk load), each in its own child
process so that its peak RSS is its own. See benchmarks/README.md.
"""
