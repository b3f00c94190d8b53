"""Reproducible StreamForge benchmarks (run as ``python -m bench.<name>``)."""
