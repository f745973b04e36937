"""The comparison report: ``python -m bench.report [results_dir]``."""
