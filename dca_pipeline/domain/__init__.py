"""The money core: pure, typed, Dagster-free and I/O-free.

Everything that computes an amount owed to somebody lives here, and only here
(`../shared/spec/business-rules.md` is the contract). Sats and centavos are ``int``;
rates and percentages are ``fractions.Fraction``; rounding happens only where the
contract says so.
"""
