"""The harness's speed against the naive loops: ``python -m bench.perf``, and ``make gpu-check``."""
