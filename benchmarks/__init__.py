"""Benchmark harnesses and peers (keras-hub's own classifier): outside the
library, run by scripts/benchmark.py."""
