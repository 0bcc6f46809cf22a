"""Document ingestion latency and throughput: ``sluice up`` under an open-loop load, against a raw
in-process write of the same batches to the embedded search engine.

``python -m benchmarks.documents`` starts ``sluice up`` on embedded stores in a temporary
directory, sends 100-document batches to the ingestion API on a fixed schedule (default 1,000
documents a second for 60 s), polls the list endpoint in bulk for ``indexed``, and reports POST
latency, ingest-to-indexed latency, throughput and backlog next to the baseline. See
benchmarks/documents/README.md.
"""
