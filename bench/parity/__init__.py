"""Do the frameworks agree? ``python -m bench.parity <overrides>``, step by step."""
