"""The ledger: system of record for clients, deposits, landed rows, allocations and payouts."""
