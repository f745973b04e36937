"""The tutorial's MLP (784 -> 128 ReLU -> 10 logits), once per framework, plus the shared start."""
