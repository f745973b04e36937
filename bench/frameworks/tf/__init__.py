"""The TensorFlow runner, reference rules, naive loop and toy paths.

Keras 3 loads its scikit-learn wrapper, and SciPy's statistics with it, whenever scikit-learn is
importable (mlxtend installs it): 0.7 s of a 3.7 s ``import tensorflow`` here, measured, for a
class no child uses. So before TensorFlow is imported anywhere in this package, the process
marks scikit-learn absent (Keras then defines its wrapper without it). Only a TensorFlow child
imports this package; nothing in optbench uses scikit-learn.
"""
from __future__ import annotations

import sys

sys.modules.setdefault("sklearn", None)
