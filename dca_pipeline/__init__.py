"""dca-pipeline: Lamassu cash-outs → exact DCA allocations → exactly-once LNbits payouts."""
