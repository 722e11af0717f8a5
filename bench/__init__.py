"""Benchmarks (not shipped): ``python -m bench.replay_bench``."""
