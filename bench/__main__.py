"""``python -m bench``: the live benchmark (bench/live_bench.py). ``python -m bench --quick`` for a short run."""

from bench.live_bench import main

main()
