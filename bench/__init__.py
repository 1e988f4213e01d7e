"""Benchmarks: each runs alone from the repository root and ends with one JSON line."""
