"""Ingestion stage: Lamassu exports → raw landing tables → validated cash-outs + quarantine."""
