"""The pytest suite; the real-server harnesses it starts live in the top-level ``harness/``."""
