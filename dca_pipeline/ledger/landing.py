"""Writes and reads of the landing tables (ledger schema section 2).

* :func:`land_exports` upserts the rows of the Lamassu exports of one fetch into
  ``lamassu_raw_rows`` (latest version per ``(source_table, id)``) and appends every new
  version to ``lamassu_raw_revisions``. Nothing is ever deleted: a row missing from a later
  export stays landed. Rows that cannot be keyed (no id; one id twice with different content
  in the same export) are written to ``quarantine`` instead.
* :func:`landed_cash_outs` / :func:`landed_actions` read back what validation needs.
* :func:`store_validation` upserts ``validated_cash_outs`` and the cash-out quarantine, and
  resolves quarantine rows whose cash-out now validates.

Every function takes an open :class:`sqlalchemy.Connection` so the caller decides the
transaction: the ingest assets land all three tables of a fetch in one transaction, so a
failure lands nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from dca_pipeline.domain.money import MoneyParseError, parse_decimal
from dca_pipeline.domain.rules import BusinessRules
from dca_pipeline.lamassu.validation import VALID_COLUMNS, parse_timestamp
from dca_pipeline.lamassu.vectorized import TextColumn, utc_timestamp
from dca_pipeline.ledger.schema import (
    lamassu_raw_revisions,
    lamassu_raw_rows,
    quarantine,
    validated_cash_outs,
)

_CHUNK = 2000  # ids per IN (...) list: well below SQLite's and PostgreSQL's parameter limits

CASH_OUT_TXS = "cash_out_txs"
CASH_OUT_ACTIONS = "cash_out_actions"
CASH_IN_TXS = "cash_in_txs"


def row_json(row: dict[str, str | None]) -> str:
    """Canonical JSON of one raw row: keys sorted, NULL as null (what :func:`row_jsons` makes)."""
    return pd.DataFrame([row], dtype=object).pipe(row_jsons)[0]


def row_jsons(frame: pd.DataFrame) -> list[str]:
    """Canonical JSON of every row (keys sorted, compact, ASCII), in C (pandas' encoder).

    This text is what ``row_sha256`` hashes: the same row always gives the same hash.
    """
    if frame.empty:
        return []
    ordered = frame.loc[:, sorted(frame.columns)].astype(object)
    ordered = ordered.where(ordered.notna(), None)
    # One object per line; a newline inside a value is escaped, so splitting is exact.
    return ordered.to_json(orient="records", lines=True).split("\n")[: len(ordered)]


def _created_and_days(
    frame: pd.DataFrame, rules: BusinessRules
) -> tuple[list[datetime | None], list[date | None]]:
    """``created`` of every row as UTC (None when unreadable) and its business day."""
    n = len(frame)
    if n == 0 or "created" not in frame.columns:
        return [None] * n, [None] * n
    values = frame["created"].to_numpy(dtype=object)
    ok, parsed = utc_timestamp(TextColumn(values))
    created: list[datetime | None] = list(parsed.to_pydatetime())
    days: list[date | None] = list(parsed.tz_convert(rules.zone).date)
    for index in np.flatnonzero(~ok):  # a non-canonical spelling: the exact parser decides
        moment = _created(values[index])
        created[index] = moment
        days[index] = rules.business_day(moment) if moment else None
    return created, days


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


_PLAIN = sa.MetaData()  # the same tables with untyped columns, for pre-processed bulk values


def _bulk_insert(connection: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """``INSERT`` many rows, converting each distinct value once per column.

    Bulk landing repeats the same few values in most columns (the fetch time, the business
    day): running the column types' bind processors once per distinct value, then inserting
    through an untyped copy of the table, stores exactly what the typed insert would (the
    same processors run) for a fraction of the per-row cost.
    """
    if not rows:
        return
    plain = _PLAIN.tables.get(table.name)
    if plain is None:
        plain = sa.Table(
            table.name, _PLAIN,
            *(sa.Column(c.name, sa.types.NullType(), primary_key=c.primary_key)
              for c in table.columns),
        )  # fmt: skip
    processors = {
        c.name: c.type._cached_bind_processor(connection.dialect)  # noqa: SLF001
        for c in table.columns
    }
    converted: dict[str, dict[Any, Any]] = {name: {} for name in processors}
    out = []
    for row in rows:
        values = {}
        for name, value in row.items():
            process = processors[name]
            if process is None or value is None:
                values[name] = value
                continue
            seen = converted[name]
            if value not in seen:
                seen[value] = process(value)
            values[name] = seen[value]
        out.append(values)
    connection.execute(plain.insert(), out)


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _created(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return parse_timestamp(text)
    except ValueError:
        return None


@dataclass
class LandingCounts:
    """What one fetch did to one table."""

    table: str
    fetched: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    quarantined: int = 0
    #: Σ of the exports' ``fiat`` column (exact Decimal text) over the landed rows, if any.
    fiat_total: Decimal = Decimal(0)
    ids: list[str] = field(default_factory=list, repr=False)

    def metadata(self) -> dict[str, Any]:
        return {
            "rows_fetched": self.fetched,
            "rows_new": self.new,
            "rows_changed": self.changed,
            "rows_unchanged": self.unchanged,
            "rows_quarantined": self.quarantined,
        }


@dataclass(frozen=True)
class _Quarantined:
    source_table: str
    source_id: str
    reason: str
    raw_row: str
    business_day: date | None
    digest: str | None = None  # the landed version's hash when known

    @property
    def sha256(self) -> str:
        return self.digest or sha256(self.raw_row)


def upsert_quarantine(
    connection: sa.Connection, rows: Iterable[_Quarantined], *, now: datetime
) -> int:
    """Insert each (table, id, row hash) once; seeing it again only moves ``last_seen_at``."""
    rows = list(rows)
    if not rows:
        return 0
    keyed = {(r.source_table, r.source_id, r.sha256): r for r in rows}
    existing: set[tuple[str, str, str]] = set()
    for table in {k[0] for k in keyed}:
        ids = sorted({k[1] for k in keyed if k[0] == table})
        for chunk in _chunks(ids):
            existing.update(
                connection.execute(
                    sa.select(quarantine.c.source_table, quarantine.c.source_id,
                              quarantine.c.row_sha256)
                    .where(quarantine.c.source_table == table,
                           quarantine.c.source_id.in_(chunk))
                ).tuples()
            )  # fmt: skip
    new = [
        {
            "source_table": k[0], "source_id": k[1], "row_sha256": k[2],
            "business_day": r.business_day, "reason": r.reason, "raw_row": r.raw_row,
            "first_seen_at": now, "last_seen_at": now, "resolved_at": None,
        }
        for k, r in keyed.items()
        if k not in existing
    ]  # fmt: skip
    if new:
        connection.execute(quarantine.insert(), new)
    seen = [k for k in keyed if k in existing]
    if seen:
        connection.execute(
            quarantine.update()
            .where(
                quarantine.c.source_table == sa.bindparam("t"),
                quarantine.c.source_id == sa.bindparam("i"),
                quarantine.c.row_sha256 == sa.bindparam("h"),
            )
            .values(last_seen_at=now, reason=sa.bindparam("r")),
            [{"t": k[0], "i": k[1], "h": k[2], "r": keyed[k].reason} for k in seen],
        )
    return len(keyed)


def land_export(
    connection: sa.Connection,
    table: str,
    frame: pd.DataFrame,
    *,
    rules: BusinessRules,
    now: datetime,
) -> LandingCounts:
    """Upsert one parsed export (every column as text, None = NULL) by ``(table, id)``."""
    counts = LandingCounts(table=table, fetched=len(frame))
    texts = row_jsons(frame)
    created, days = _created_and_days(frame, rules)
    ids = frame["id"].to_numpy(dtype=object) if len(frame) else []
    by_id: dict[str, dict[str, Any]] = {}
    copies: dict[str, set[str]] = {}
    bad: list[_Quarantined] = []
    for index, row_id in enumerate(ids):
        text = texts[index]
        if not row_id:
            bad.append(_Quarantined(table, "", "id missing", text, days[index]))
            continue
        copies.setdefault(row_id, set()).add(text)
        by_id[row_id] = {"text": text, "created": created[index], "day": days[index],
                         "index": index}  # fmt: skip
    for row_id, texts in copies.items():
        if len(texts) > 1:
            # Which copy is Lamassu's row is unknowable: land neither, quarantine every copy.
            del by_id[row_id]
            bad.extend(
                _Quarantined(table, row_id, "same id twice with different content", t, None)
                for t in sorted(texts)
            )
    counts.quarantined = upsert_quarantine(connection, bad, now=now)

    ids = sorted(by_id)
    existing: dict[str, tuple[str, int]] = {}
    for chunk in _chunks(ids):
        for row_id, digest, revision in connection.execute(
            sa.select(lamassu_raw_rows.c.id, lamassu_raw_rows.c.row_sha256,
                      lamassu_raw_rows.c.revision)
            .where(lamassu_raw_rows.c.source_table == table, lamassu_raw_rows.c.id.in_(chunk))
        ):  # fmt: skip
            existing[row_id] = (digest, revision)
    inserts, updates, revisions, unchanged = [], [], [], []
    fiat = frame["fiat"].to_numpy(dtype=object) if "fiat" in frame.columns else None
    for row_id in ids:
        item = by_id[row_id]
        digest = sha256(item["text"])
        if fiat is not None:
            # An unreadable fiat is validation's to quarantine; this total is informational.
            with contextlib.suppress(MoneyParseError, AttributeError):
                counts.fiat_total += parse_decimal(fiat[item["index"]] or "0")
        previous = existing.get(row_id)
        if previous is None:
            inserts.append({
                "source_table": table, "id": row_id, "created": item["created"],
                "business_day": item["day"], "row_json": item["text"], "row_sha256": digest,
                "revision": 1, "first_seen_at": now, "last_seen_at": now,
            })  # fmt: skip
            revisions.append((row_id, 1, item["text"], digest))
        elif previous[0] != digest:
            revision = previous[1] + 1
            updates.append({
                "t": table, "i": row_id, "created": item["created"], "business_day": item["day"],
                "row_json": item["text"], "row_sha256": digest, "revision": revision,
                "last_seen_at": now,
            })  # fmt: skip
            revisions.append((row_id, revision, item["text"], digest))
        else:
            unchanged.append(row_id)
    _bulk_insert(connection, lamassu_raw_rows, inserts)
    if updates:
        connection.execute(
            lamassu_raw_rows.update()
            .where(
                lamassu_raw_rows.c.source_table == sa.bindparam("t"),
                lamassu_raw_rows.c.id == sa.bindparam("i"),
            )
            .values(
                created=sa.bindparam("created"),
                business_day=sa.bindparam("business_day"),
                row_json=sa.bindparam("row_json"),
                row_sha256=sa.bindparam("row_sha256"),
                revision=sa.bindparam("revision"),
                last_seen_at=sa.bindparam("last_seen_at"),
            ),
            updates,
        )
    _bulk_insert(
        connection,
        lamassu_raw_revisions,
        [
            {"source_table": table, "id": i, "revision": r, "row_json": t,
             "row_sha256": h, "seen_at": now}
            for i, r, t, h in revisions
        ],
    )  # fmt: skip
    for chunk in _chunks(unchanged):
        connection.execute(
            lamassu_raw_rows.update()
            .where(lamassu_raw_rows.c.source_table == table, lamassu_raw_rows.c.id.in_(chunk))
            .values(last_seen_at=now)
        )
    # A cleanly keyed version of an id resolves the keying problems quarantined before.
    _resolve(connection, table, ids, now=now, reason="same id twice with different content")
    counts.new, counts.changed, counts.unchanged = len(inserts), len(updates), len(unchanged)
    counts.ids = ids
    return counts


def _resolve(
    connection: sa.Connection,
    table: str,
    ids: Sequence[str],
    *,
    now: datetime,
    reason: str | None = None,
) -> int:
    """Mark unresolved quarantine rows of these ids resolved (optionally only one reason)."""
    resolved = 0
    for chunk in _chunks(list(ids)):
        where = [
            quarantine.c.source_table == table,
            quarantine.c.source_id.in_(chunk),
            quarantine.c.resolved_at.is_(None),
        ]
        if reason is not None:
            where.append(quarantine.c.reason == reason)
        resolved += connection.execute(
            quarantine.update().where(*where).values(resolved_at=now)
        ).rowcount
    return resolved


def _frame(rows: Iterable[str]) -> pd.DataFrame:
    records = [json.loads(text) for text in rows]
    return pd.DataFrame.from_records(records) if records else pd.DataFrame()


def landed_cash_outs(
    connection: sa.Connection, start: datetime, end: datetime
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Latest landed ``cash_out_txs`` created in [start, end), plus those with no readable
    ``created`` (validation quarantines them); and their row hashes by id."""
    raw = lamassu_raw_rows.c
    result = connection.execute(
        sa.select(raw.id, raw.row_json, raw.row_sha256)
        .where(
            raw.source_table == CASH_OUT_TXS,
            sa.or_(sa.and_(raw.created >= start, raw.created < end), raw.created.is_(None)),
        )
        .order_by(raw.id)
    ).all()
    frame = _frame(r.row_json for r in result)
    if not frame.empty:
        frame = frame.astype(object).where(frame.notna(), None)
    return frame, {r.id: r.row_sha256 for r in result}


def landed_actions(connection: sa.Connection, since: datetime) -> pd.DataFrame:
    """Landed ``dispense`` actions created at or after ``since`` (a cash-out's dispense
    action never precedes the cash-out, so this holds the dispense of every row of the
    window). Validation reads nothing else from ``cash_out_actions``."""
    raw = lamassu_raw_rows.c
    result = connection.execute(
        sa.select(raw.row_json).where(
            raw.source_table == CASH_OUT_ACTIONS,
            sa.or_(raw.created >= since, raw.created.is_(None)),
            # row_jsons() writes compact JSON, so the action reads exactly like this.
            raw.row_json.contains('"action":"dispense"', autoescape=True),
        )
    ).scalars()
    frame = _frame(result)
    if frame.empty:
        return pd.DataFrame(columns=["id", "tx_id", "action", "created"], dtype=object)
    return frame.astype(object).where(frame.notna(), None)


@dataclass
class ValidationCounts:
    valid: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    eligible: int = 0
    quarantined: int = 0
    newly_ineligible: list[str] = field(default_factory=list)
    withdrawn: list[str] = field(default_factory=list)
    resolved: int = 0
    fiat_cents_eligible: int = 0


_COMPARED = VALID_COLUMNS


def _column(series: pd.Series) -> list[Any]:
    """One column as plain Python values (datetime, int, bool, str, None) for the database."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return [None if v is pd.NaT else v for v in series.array.to_pydatetime()]
    if isinstance(series.dtype, pd.Int64Dtype):
        return series.astype(object).where(series.notna(), None).tolist()
    return series.tolist()


def _records(valid: pd.DataFrame) -> list[dict[str, Any]]:
    columns = [_column(valid[name]) for name in VALID_COLUMNS]
    records = [
        dict(zip(VALID_COLUMNS, values, strict=True)) for values in zip(*columns, strict=True)
    ]
    for record in records:
        record["business_day"] = date.fromisoformat(record["business_day"])
    return records


def store_validation(
    connection: sa.Connection,
    valid: pd.DataFrame,
    quarantined: pd.DataFrame,
    row_hashes: dict[str, str],
    *,
    rules: BusinessRules,
    now: datetime,
) -> ValidationCounts:
    """Upsert ``validated_cash_outs`` and the cash-out quarantine of one validation.

    A cash-out is never deleted: when its latest landed version is quarantined, its validated
    row stays but becomes ``eligible = false`` with the quarantine reason, so an allocation
    that already used it is flagged downstream instead of silently kept.
    """
    counts = ValidationCounts(valid=len(valid))
    records = _records(valid)
    ids = [r["id"] for r in records]
    existing: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(ids):
        for row in connection.execute(
            sa.select(validated_cash_outs).where(validated_cash_outs.c.id.in_(chunk))
        ).mappings():
            existing[row["id"]] = dict(row)
    inserts, updates = [], []
    for record in records:
        before = existing.get(record["id"])
        if record["eligible"]:
            counts.eligible += 1
            counts.fiat_cents_eligible += record["fiat_cents"]
        if before is None:
            inserts.append({**record, "validated_at": now})
        elif any(before[c] != record[c] for c in _COMPARED):
            if before["eligible"] and not record["eligible"]:
                counts.newly_ineligible.append(record["id"])
            updates.append({**record, "validated_at": now, "key": record["id"]})
        else:
            counts.unchanged += 1
    _bulk_insert(connection, validated_cash_outs, inserts)
    if updates:
        connection.execute(
            validated_cash_outs.update()
            .where(validated_cash_outs.c.id == sa.bindparam("key"))
            .values({c: sa.bindparam(c) for c in (*VALID_COLUMNS, "validated_at") if c != "id"}),
            updates,
        )
    counts.new, counts.changed = len(inserts), len(updates)

    bad = []
    for row in quarantined.itertuples(index=False):
        try:
            created = _created(json.loads(row.raw_row).get("created"))
        except (ValueError, AttributeError):
            created = None
        bad.append(
            _Quarantined(
                row.source_table, row.source_id, row.reason, row.raw_row,
                rules.business_day(created) if created else None,
                row_hashes.get(row.source_id),
            )
        )  # fmt: skip
    counts.quarantined = upsert_quarantine(connection, bad, now=now)
    # A cash-out whose latest version is quarantined must not stay eligible.
    broken_ids = sorted({b.source_id for b in bad if b.source_id})
    reasons = {b.source_id: b.reason for b in bad}
    for chunk in _chunks(broken_ids):
        for row_id, eligible in connection.execute(
            sa.select(validated_cash_outs.c.id, validated_cash_outs.c.eligible).where(
                validated_cash_outs.c.id.in_(chunk)
            )
        ).tuples():
            reason = f"quarantined: {reasons[row_id]}"[:1000]
            connection.execute(
                validated_cash_outs.update()
                .where(validated_cash_outs.c.id == row_id)
                .where(validated_cash_outs.c.ineligible_reason.is_distinct_from(reason))
                .values(eligible=False, ineligible_reason=reason, validated_at=now)
            )
            if eligible:
                counts.withdrawn.append(row_id)
    counts.resolved = _resolve(connection, CASH_OUT_TXS, ids, now=now)
    return counts


def validated_rows(connection: sa.Connection, first_day: date, last_day: date) -> pd.DataFrame:
    """``validated_cash_outs`` of business days [first_day, last_day], ordered by id."""
    v = validated_cash_outs.c
    rows = connection.execute(
        sa.select(*(v[c] for c in VALID_COLUMNS))
        .where(v.business_day.between(first_day, last_day))
        .order_by(v.id)
    ).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=list(VALID_COLUMNS))
