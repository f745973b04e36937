"""optbench: six gradient-descent methods, PyTorch vs TensorFlow, on the seed's MNIST MLP.

This package's core imports neither framework; see bench/frameworks/torch/runner.py and bench/frameworks/tf/runner.py.
"""
__version__ = "0.1.0"
