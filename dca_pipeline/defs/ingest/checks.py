"""Checks of ``validated_cash_outs``, evaluated from the ledger in the asset's own step.

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

import json
from collections import Counter
from datetime import date

import dagster as dg
import sqlalchemy as sa

from dca_pipeline.domain.money import MoneyParseError, parse_cents, parse_integer
from dca_pipeline.ledger.landing import keying_quarantined_ids
from dca_pipeline.ledger.schema import lamassu_raw_rows, quarantine, validated_cash_outs
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
    first, last = _days(first_day, last_day)
    q = quarantine.c
    rows = connection.execute(
        sa.select(q.source_table, q.source_id, q.reason).where(
            q.resolved_at.is_(None),
            sa.or_(q.business_day.between(first, last), q.business_day.is_(None)),
        )
    ).all()
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
    first, last = _days(first_day, last_day)
    v = validated_cash_outs.c
    rows = connection.execute(
        sa.select(v.id, v.principal_sats, v.ticker_principal_sats)
        .where(v.business_day.between(first, last), v.ticker_deviation.is_(True))
        .order_by(v.id)
    ).all()
    return dg.AssetCheckResult(
        check_name=TICKER_DEVIATION,
        asset_key=VALIDATED_KEY,
        passed=not rows,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "deviating": len(rows),
            "sample": dg.MetadataValue.json(
                [
                    {"id": r.id, "principal_sats": r.principal_sats,
                     "ticker_principal_sats": r.ticker_principal_sats}
                    for r in rows[:SAMPLE]
                ]
            ),  # fmt: skip
        },
    )


def raw_and_validated_reconcile(
    connection: sa.Connection, window: FetchWindow
) -> dg.AssetCheckResult:
    raw, v, q = lamassu_raw_rows.c, validated_cash_outs.c, quarantine.c
    landed = {
        r.id: r
        for r in connection.execute(
            sa.select(raw.id, raw.row_sha256, raw.row_json).where(
                raw.source_table == "cash_out_txs",
                raw.created >= window.start,
                raw.created < window.end,
            )
        )
    }
    validated = connection.execute(
        sa.select(v.id, v.fiat_cents, v.crypto_atoms, v.eligible).where(
            v.created >= window.start, v.created < window.end
        )
    ).all()
    quarantined_current: set[str] = set()
    ids = sorted(landed)
    for start in range(0, len(ids), 2000):
        chunk = ids[start : start + 2000]
        for source_id, digest in connection.execute(
            sa.select(q.source_id, q.row_sha256).where(
                q.source_table == "cash_out_txs", q.resolved_at.is_(None),
                q.source_id.in_(chunk),
            )
        ):  # fmt: skip
            if landed[source_id].row_sha256 == digest:
                quarantined_current.add(source_id)
    # The latest fetch held the id twice with different content: the older landed version is
    # not its current one, which is quarantined (it must not be eligible).
    quarantined_current.update(keying_quarantined_ids(connection) & set(landed))

    counts = Counter(r.id for r in validated)
    duplicates = sorted(i for i, n in counts.items() if n > 1)
    validated_by_id = {r.id: r for r in validated}
    unaccounted = sorted(set(landed) - set(validated_by_id) - quarantined_current)
    orphans = sorted(set(validated_by_id) - set(landed))
    still_eligible = sorted(
        i for i in quarantined_current if i in validated_by_id and validated_by_id[i].eligible
    )
    raw_fiat = raw_sats = ok_fiat = ok_sats = 0
    unreadable: list[str] = []
    for row_id, row in validated_by_id.items():
        if row_id in quarantined_current or row_id not in landed:
            continue
        values = json.loads(landed[row_id].row_json)
        try:
            raw_fiat += parse_cents(values.get("fiat") or "")
            raw_sats += parse_integer(values.get("crypto_atoms") or "")
        except MoneyParseError:
            unreadable.append(row_id)
        ok_fiat += row.fiat_cents
        ok_sats += row.crypto_atoms
    problems = {
        "duplicate_ids": duplicates,
        "landed_but_unaccounted": unaccounted,
        "validated_without_landed_row": orphans,
        "quarantined_but_eligible": still_eligible,
        "validated_from_unreadable_raw": unreadable,
    }
    totals_match = (raw_fiat, raw_sats) == (ok_fiat, ok_sats)
    passed = totals_match and not any(problems.values())
    return dg.AssetCheckResult(
        check_name=RECONCILE,
        asset_key=VALIDATED_KEY,
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=None if passed else "landed and validated cash-outs do not reconcile",
        metadata={
            "landed": len(landed),
            "validated": len(validated),
            "quarantined_current_version": len(quarantined_current),
            "raw_fiat_cents": raw_fiat,
            "validated_fiat_cents": ok_fiat,
            "raw_sats": raw_sats,
            "validated_sats": ok_sats,
            **{name: dg.MetadataValue.json(ids[:SAMPLE]) for name, ids in problems.items()},
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
