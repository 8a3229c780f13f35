"""The ingest checks' ledger reads and their verdicts, as plain outcomes (no Dagster).

:mod:`dca_pipeline.defs.ingest.checks` only turns these outcomes into asset check results:

* :func:`quarantine_report`: unresolved quarantined rows of the days, with their reasons.
* :func:`ticker_deviation`: validated cash-outs flagged as deviating from the ticker.
* :func:`reconcile_raw_and_validated`: every landed cash-out of the window is accounted for
  exactly once (validated, or its current version quarantined; an id whose latest export held
  it twice with different content counts as quarantined), no validated row lacks a landed one,
  no id appears twice, a cash-out whose current version is quarantined is not eligible, and the
  fiat and sats totals of the validated rows equal those of their landed rows.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa

from dca_pipeline.domain.money import MoneyParseError, parse_cents, parse_integer
from dca_pipeline.ledger.landing import keying_quarantined_ids
from dca_pipeline.ledger.schema import lamassu_raw_rows, quarantine, validated_cash_outs

#: Ids per ``IN (...)`` list.
_CHUNK = 2000


@dataclass(frozen=True)
class QuarantinedRow:
    source_table: str
    source_id: str
    reason: str


def quarantine_report(c: sa.Connection, first: date, last: date) -> list[QuarantinedRow]:
    """Unresolved quarantined rows of business days ``[first, last]`` (or of no known day)."""
    q = quarantine.c
    rows = c.execute(
        sa.select(q.source_table, q.source_id, q.reason).where(
            q.resolved_at.is_(None),
            sa.or_(q.business_day.between(first, last), q.business_day.is_(None)),
        )
    ).all()
    return [QuarantinedRow(r.source_table, r.source_id, r.reason) for r in rows]


@dataclass(frozen=True)
class TickerDeviation:
    id: str
    principal_sats: int
    ticker_principal_sats: int | None


def ticker_deviation(c: sa.Connection, first: date, last: date) -> list[TickerDeviation]:
    """Validated cash-outs of ``[first, last]`` flagged as deviating from the ticker, by id."""
    v = validated_cash_outs.c
    rows = c.execute(
        sa.select(v.id, v.principal_sats, v.ticker_principal_sats)
        .where(v.business_day.between(first, last), v.ticker_deviation.is_(True))
        .order_by(v.id)
    ).all()
    return [TickerDeviation(r.id, r.principal_sats, r.ticker_principal_sats) for r in rows]


@dataclass(frozen=True)
class ReconcileOutcome:
    """Landed raw cash-outs against validated ones for one fetch window."""

    landed: int
    validated: int
    quarantined_current_version: int
    raw_fiat_cents: int
    validated_fiat_cents: int
    raw_sats: int
    validated_sats: int
    duplicate_ids: list[str]
    landed_but_unaccounted: list[str]
    validated_without_landed_row: list[str]
    quarantined_but_eligible: list[str]
    validated_from_unreadable_raw: list[str]

    @property
    def problems(self) -> dict[str, list[str]]:
        """Problem name -> ids, in a fixed order (every name, empty lists included)."""
        return {
            "duplicate_ids": self.duplicate_ids,
            "landed_but_unaccounted": self.landed_but_unaccounted,
            "validated_without_landed_row": self.validated_without_landed_row,
            "quarantined_but_eligible": self.quarantined_but_eligible,
            "validated_from_unreadable_raw": self.validated_from_unreadable_raw,
        }

    @property
    def totals_match(self) -> bool:
        return (self.raw_fiat_cents, self.raw_sats) == (
            self.validated_fiat_cents,
            self.validated_sats,
        )

    @property
    def passed(self) -> bool:
        return self.totals_match and not any(self.problems.values())


def reconcile_raw_and_validated(
    c: sa.Connection, start: datetime, end: datetime
) -> ReconcileOutcome:
    """Reconcile the cash-outs created in ``[start, end)`` (the fetch window)."""
    raw, v, q = lamassu_raw_rows.c, validated_cash_outs.c, quarantine.c
    landed = {
        r.id: r
        for r in c.execute(
            sa.select(raw.id, raw.row_sha256, raw.row_json).where(
                raw.source_table == "cash_out_txs",
                raw.created >= start,
                raw.created < end,
            )
        )
    }
    validated = c.execute(
        sa.select(v.id, v.fiat_cents, v.crypto_atoms, v.eligible).where(
            v.created >= start, v.created < end
        )
    ).all()
    quarantined_current: set[str] = set()
    ids = sorted(landed)
    for offset in range(0, len(ids), _CHUNK):
        chunk = ids[offset : offset + _CHUNK]
        for source_id, digest in c.execute(
            sa.select(q.source_id, q.row_sha256).where(
                q.source_table == "cash_out_txs",
                q.resolved_at.is_(None),
                q.source_id.in_(chunk),
            )
        ):
            if landed[source_id].row_sha256 == digest:
                quarantined_current.add(source_id)
    # The latest fetch held the id twice with different content: the older landed version is
    # not its current one, which is quarantined (it must not be eligible).
    quarantined_current.update(keying_quarantined_ids(c) & set(landed))

    counts = Counter(r.id for r in validated)
    validated_by_id = {r.id: r for r in validated}
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
    return ReconcileOutcome(
        landed=len(landed),
        validated=len(validated),
        quarantined_current_version=len(quarantined_current),
        raw_fiat_cents=raw_fiat,
        validated_fiat_cents=ok_fiat,
        raw_sats=raw_sats,
        validated_sats=ok_sats,
        duplicate_ids=sorted(i for i, n in counts.items() if n > 1),
        landed_but_unaccounted=sorted(set(landed) - set(validated_by_id) - quarantined_current),
        validated_without_landed_row=sorted(set(validated_by_id) - set(landed)),
        quarantined_but_eligible=sorted(
            i for i in quarantined_current if i in validated_by_id and validated_by_id[i].eligible
        ),
        validated_from_unreadable_raw=unreadable,
    )
