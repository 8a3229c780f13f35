"""Run-time loopback pieces: the demo, LNbits, Dagster servers, process/port helper, fixtures."""
