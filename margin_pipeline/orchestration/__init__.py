"""Cross-stream order: what runs after what, and the synchronous chain behind ``margin-pipeline run``."""
