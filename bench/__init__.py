"""optbench: six gradient-descent methods, PyTorch vs TensorFlow vs JAX, on the tutorial's MNIST MLP.

The core imports no framework: framework code lives only in bench/frameworks/ and models/
(tests/test_architecture.py checks it). docs/ARCHITECTURE.md draws the whole data flow.
"""
__version__ = "0.1.0"
