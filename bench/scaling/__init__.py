"""The batch-size scaling pass: one method's time per step at batch sizes from 1 to the full set,
for every framework and model, under the timing pass's protocol (``python -m bench.scaling``)."""
