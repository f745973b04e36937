"""The timing pass: steady-state time per step of each configuration of a sweep, measured in
interleaved rounds by long-lived workers while no run trains (``python -m bench.timing``)."""
