"""Real-component harnesses and oracles for tests, benches and the demo."""
