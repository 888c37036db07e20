"""Syncgate benchmark harness: ``python -m bench.run [--quick] [--json out.json]``."""
