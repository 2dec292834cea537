"""Scoring a job's output, sending no request: extraction, normalisers, metrics and their aggregates (mean,
stderr, 95% interval, pass@k, maj@k). ``spec`` is pure pydantic, read by the job spec; ``folder`` reads an output
folder and writes ``scores/`` and ``scores.json``."""
