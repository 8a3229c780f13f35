"""Allocation stage: validated cash-outs → flow/fixed allocations, commission splits, balances."""
