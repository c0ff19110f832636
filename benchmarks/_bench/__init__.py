"""Helpers of the benchmarks (``benchmarks/upsert.py``): data, RSS sampling, engines, checks.

Nothing here is part of the ``etl`` package; the only coupling is the clearly
marked ``etl`` adapter in :mod:`_bench.engines`.
"""
