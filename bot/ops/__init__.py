"""Operating sitrep: logs (with redaction) and metrics."""
