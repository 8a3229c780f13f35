"""Test-only real-server harnesses and oracles (sshd, Nostr relay, webhook, ...); not installed."""
