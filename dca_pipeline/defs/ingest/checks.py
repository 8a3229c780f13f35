"""Checks of ``validated_cash_outs``, evaluated from the ledger in the asset's own step.

The ledger reads and verdicts are :mod:`dca_pipeline.ledger.ingest_checks`; this module only
turns their outcomes into asset check results.

They run inside the asset (``check_specs``) because they need the run's partition range:

* ``quarantine_report`` (WARN): unresolved quarantined rows of the days, with their reasons.
  Not blocking: §8 says a bad row must not stop the rest of the batch, and it allocates
  nothing anyway; the warning makes it visible until a later version validates (resolved).
* ``ticker_deviation`` (WARN): cash-outs whose principal differs from the ticker-implied one
  by more than max(1 %, 200 sats) (business-rules §3): flagged for audit, never "fixed".
* ``raw_and_validated_reconcile`` (ERROR, blocking): every landed cash-out of the window is
  accounted for exactly once (validated, or its current version quarantined; an id whose
  latest export held it twice with different content counts as quarantined), no validated
  row lacks a landed one, no id appears twice, a cash-out whose current version is quarantined
  is not eligible, and the fiat and sats totals of the validated rows equal those of their
  landed rows. A failure stops the allocation downstream in the same run.
"""

from __future__ import annotations

from collections import Counter
from datetime import date

import dagster as dg
import sqlalchemy as sa

from dca_pipeline.ledger import ingest_checks
from dca_pipeline.sources import FetchWindow

VALIDATED_KEY = dg.AssetKey("validated_cash_outs")
QUARANTINE_REPORT = "quarantine_report"
TICKER_DEVIATION = "ticker_deviation"
RECONCILE = "raw_and_validated_reconcile"
SAMPLE = 20

CHECK_SPECS = [
    dg.AssetCheckSpec(
        QUARANTINE_REPORT, asset=VALIDATED_KEY,
        description="Unresolved quarantined Lamassu rows of these business days (WARN).",
    ),
    dg.AssetCheckSpec(
        TICKER_DEVIATION, asset=VALIDATED_KEY,
        description="Principal differs from the ticker-implied one by > max(1 %, 200 sats).",
    ),
    dg.AssetCheckSpec(
        RECONCILE, asset=VALIDATED_KEY, blocking=True,
        description="Landed raw cash-outs and validated ones reconcile: ids and totals (ERROR).",
    ),
]  # fmt: skip


def _days(first_day: str, last_day: str) -> tuple[date, date]:
    return date.fromisoformat(first_day), date.fromisoformat(last_day)


def quarantine_report(
    connection: sa.Connection, first_day: str, last_day: str
) -> dg.AssetCheckResult:
    rows = ingest_checks.quarantine_report(connection, *_days(first_day, last_day))
    reasons = Counter((r.source_table, r.reason) for r in rows)
    table = ["| table | reason | rows |", "|---|---|---|"] + [
        f"| {t} | {reason[:160].replace('|', '/')} | {n} |"
        for (t, reason), n in reasons.most_common(SAMPLE)
    ]
    return dg.AssetCheckResult(
        check_name=QUARANTINE_REPORT,
        asset_key=VALIDATED_KEY,
        passed=not rows,
        severity=dg.AssetCheckSeverity.WARN,
        description=None if not rows else f"{len(rows)} quarantined row(s) need attention",
        metadata={
            "quarantined": len(rows),
            "reasons": dg.MetadataValue.md("\n".join(table) if rows else "_none_"),
            "sample_ids": dg.MetadataValue.json(sorted({r.source_id for r in rows})[:SAMPLE]),
        },
    )


def ticker_deviation(
    connection: sa.Connection, first_day: str, last_day: str
) -> dg.AssetCheckResult:
    rows = ingest_checks.ticker_deviation(connection, *_days(first_day, last_day))
    return dg.AssetCheckResult(
        check_name=TICKER_DEVIATION,
        asset_key=VALIDATED_KEY,
        passed=not rows,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "deviating": len(rows),
            "sample": dg.MetadataValue.json(
                [
                    {
                        "id": r.id,
                        "principal_sats": r.principal_sats,
                        "ticker_principal_sats": r.ticker_principal_sats,
                    }
                    for r in rows[:SAMPLE]
                ]
            ),  # fmt: skip
        },
    )


def raw_and_validated_reconcile(
    connection: sa.Connection, window: FetchWindow
) -> dg.AssetCheckResult:
    outcome = ingest_checks.reconcile_raw_and_validated(connection, window.start, window.end)
    passed = outcome.passed
    return dg.AssetCheckResult(
        check_name=RECONCILE,
        asset_key=VALIDATED_KEY,
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=None if passed else "landed and validated cash-outs do not reconcile",
        metadata={
            "landed": outcome.landed,
            "validated": outcome.validated,
            "quarantined_current_version": outcome.quarantined_current_version,
            "raw_fiat_cents": outcome.raw_fiat_cents,
            "validated_fiat_cents": outcome.validated_fiat_cents,
            "raw_sats": outcome.raw_sats,
            "validated_sats": outcome.validated_sats,
            **{name: dg.MetadataValue.json(ids[:SAMPLE]) for name, ids in outcome.problems.items()},
        },
    )


def evaluate_checks(
    connection: sa.Connection, window: FetchWindow, first_day: str, last_day: str
) -> list[dg.AssetCheckResult]:
    return [
        quarantine_report(connection, first_day, last_day),
        ticker_deviation(connection, first_day, last_day),
        raw_and_validated_reconcile(connection, window),
    ]
