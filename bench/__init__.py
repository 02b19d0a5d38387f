"""Benchmarks: scripts that print their tables and exit 0 (PYTHONPATH=. python bench/NAME.py)."""
