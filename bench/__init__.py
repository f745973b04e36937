"""optbench: six gradient-descent methods, PyTorch vs TensorFlow, on the seed's MNIST MLP.

This package's core imports neither framework; see bench/runner_torch.py and bench/runner_tf.py.
"""
__version__ = "0.1.0"
