"""The timing pass: steady-state time per step of each configuration of a sweep, measured in
interleaved rounds by several worker processes per configuration, started slot by slot, while no
run trains (``python -m bench.timing``); the protocol is reusable (``bench.timing.protocol``)."""
