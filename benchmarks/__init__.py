"""Benchmarks of margin_pipeline; run each as ``python -m benchmarks.<name>`` (see README.md)."""
