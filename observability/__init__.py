"""Metrics, traces and structured logs: the bottom layer, imported by every other (it imports none of them)."""
