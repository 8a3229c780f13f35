"""Payout stage: the sensor-triggered ``payout_job``, its resources, the reconciliation report."""
