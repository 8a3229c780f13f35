"""Lamassu formats: CSV reading, exact parsing and §8 validation.

Shared by `simulate` and the Dagster assets: the one place Lamassu rows are interpreted.
"""
