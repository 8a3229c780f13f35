"""Writes and reads of the landing tables (ledger schema section 2).

* :func:`land_exports` upserts the rows of the Lamassu exports of one fetch into
  ``lamassu_raw_rows`` (latest version per ``(source_table, id)``) and appends every new
  version to ``lamassu_raw_revisions``. Nothing is ever deleted: a row missing from a later
  export stays landed. Rows that cannot be keyed (no id; one id twice with different content
  in the same export) are written to ``quarantine`` instead.
* :func:`landed_cash_outs` / :func:`landed_actions` read back what validation needs.
* :func:`record_fetch` records the window of a fetch that landed (``lamassu_fetches``, in the
  landing transaction); :func:`landed_through` says up to when everything has landed.
* :func:`store_validation` upserts ``validated_cash_outs`` and the cash-out quarantine, and
  resolves quarantine rows whose cash-out now validates. An id whose latest export held it
  twice with different content keeps its validated row, ineligible (quarantined), until an
  export has it once again (only :func:`land_export` resolves such keying quarantines).

Every function takes an open :class:`sqlalchemy.Connection` so the caller decides the
transaction: the ingest assets land all three tables of a fetch in one transaction, so a
failure lands nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
from dca_pipeline.ledger import bulk
from dca_pipeline.ledger.schema import (
    lamassu_fetches,
    lamassu_raw_revisions,
    lamassu_raw_rows,
    quarantine,
    validated_cash_outs,
)

_CHUNK = 2000  # ids per IN (...) list: well below SQLite's and PostgreSQL's parameter limits

CASH_OUT_TXS = "cash_out_txs"
CASH_OUT_ACTIONS = "cash_out_actions"
CASH_IN_TXS = "cash_in_txs"

#: Quarantine reasons of rows that cannot be keyed (written by :func:`land_export`, never by
#: validation): only a later cleanly keyed version of the id resolves them.
DUPLICATE_ID_REASON = "same id twice with different content"
ID_MISSING_REASON = "id missing"
KEYING_REASONS = (DUPLICATE_ID_REASON, ID_MISSING_REASON)


def row_json(row: dict[str, str | None]) -> str:
    """Canonical JSON of one raw row: keys sorted, NULL as null (what :func:`row_jsons` makes)."""
    return pd.DataFrame([row], dtype=object).pipe(row_jsons)[0]


def row_jsons(frame: pd.DataFrame) -> list[str]:
    """Canonical JSON of every row (keys sorted, compact, ASCII), as pandas' encoder writes it.

    This text is what ``row_sha256`` hashes: the same row always gives the same hash. Exports
    hold only text and NULL, so each distinct value of a column is encoded once and the rows
    are joined from those pieces (pandas' ``to_json(lines=True)`` costs ~8 s per 500 k rows);
    anything else (numbers, …) goes through pandas itself.
    """
    if frame.empty:
        return []
    columns = sorted(frame.columns)
    try:
        pieces = [_encoded_column(name, frame[name].to_numpy(dtype=object)) for name in columns]
    except _NotPlainText:
        return _pandas_row_jsons(frame)
    return ["{" + ",".join(row) + "}" for row in zip(*pieces, strict=True)]


def _pandas_row_jsons(frame: pd.DataFrame) -> list[str]:
    ordered = frame.loc[:, sorted(frame.columns)].astype(object)
    ordered = ordered.where(ordered.notna(), None)
    # One object per line; a newline inside a value is escaped, so splitting is exact.
    return ordered.to_json(orient="records", lines=True).split("\n")[: len(ordered)]


class _NotPlainText(Exception):
    """A value the fast encoder does not spell like pandas: use pandas for the frame."""


def _json_text(value: str) -> str:
    """``value`` as pandas' encoder writes it: ASCII, ``/`` escaped, DEL kept raw."""
    if "\x7f" in value:
        raise _NotPlainText  # json.dumps escapes DEL, pandas does not
    # json.dumps refuses nothing, but pandas raises on lone surrogates: let pandas decide.
    if not value.isascii() and any("\ud800" <= ch <= "\udfff" for ch in value):
        raise _NotPlainText
    return json.dumps(value).replace("/", "\\/")


_SEP = "\x1f"  # a control character: json.dumps always writes it as \u001f


def _json_texts(values: np.ndarray) -> list[str] | None:
    """:func:`_json_text` of many texts in one ``json.dumps`` call, or None when that is not
    exact (the separator, DEL, a lone surrogate or a literal ``\\u001f`` in a value)."""
    if len(values) == 0 or pd.api.types.infer_dtype(values, skipna=False) != "string":
        return None
    joined = _SEP.join(values)
    if joined.count(_SEP) != len(values) - 1 or "\\u001f" in joined or "\x7f" in joined:
        return None
    if not joined.isascii():
        try:
            joined.encode()
        except UnicodeEncodeError:
            return None
    body = json.dumps(joined)[1:-1].replace("/", "\\/")
    return [f'"{text}"' for text in body.split("\\u001f")]


def _encoded_column(name: Any, values: np.ndarray) -> list[str]:
    """``"name":value`` for each row, each distinct value encoded once (factorized in C)."""
    if not isinstance(name, str):
        raise _NotPlainText
    key = _json_text(name) + ":"
    codes, uniques = pd.factorize(values, use_na_sentinel=True)  # None / NaN → -1
    encoded = _json_texts(uniques)
    if encoded is None:
        encoded = []
        for value in uniques:
            if type(value) is not str:
                raise _NotPlainText
            encoded.append(_json_text(value))
    encoded = [f"{key}{text}" for text in encoded]
    encoded.append(key + "null")  # index -1: NULL, as pandas writes it
    return np.array(encoded, dtype=object)[codes].tolist()


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


def _driver_rows(connection: sa.Connection, sql: str, params: Sequence[Any]) -> list[tuple]:
    """Run ``sql`` (``?`` placeholders) on the driver connection: plain tuples, no Row objects."""
    if connection.dialect.name != "sqlite":
        sql = sql.replace("?", "%s")
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, tuple(params))
        return cursor.fetchall() if cursor.description else []
    finally:
        cursor.close()


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
    """Insert each (table, id, row hash) once; seeing it again moves ``last_seen_at`` and
    re-opens it if it was resolved (the same bad row is back: a duplicate that recurs)."""
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
            .values(last_seen_at=now, reason=sa.bindparam("r"), resolved_at=None),
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
    """Upsert one parsed export (every column as text, None = NULL) by ``(table, id)``.

    One ``SELECT`` of (id, hash, revision) per chunk of ids tells new, changed and unchanged
    rows apart; only new and changed rows are written (plain tuples through the driver), and
    unchanged ones only get their ``last_seen_at`` moved.
    """
    counts = LandingCounts(table=table, fetched=len(frame))
    texts = row_jsons(frame)
    created, days = _created_and_days(frame, rules)
    ids = frame["id"].to_numpy(dtype=object).tolist() if len(frame) else []
    by_id: dict[str, int] = {}  # id → index of its (last) row
    copies: dict[str, set[str]] = {}
    bad: list[_Quarantined] = []
    for index, row_id in enumerate(ids):
        if not row_id:
            bad.append(_Quarantined(table, "", ID_MISSING_REASON, texts[index], days[index]))
            continue
        previous = by_id.get(row_id)
        if previous is not None and texts[previous] != texts[index]:
            copies.setdefault(row_id, {texts[previous]}).add(texts[index])
        by_id[row_id] = index
    for row_id, versions in copies.items():
        # Which copy is Lamassu's row is unknowable: land neither, quarantine every copy.
        del by_id[row_id]
        bad.extend(
            _Quarantined(table, row_id, DUPLICATE_ID_REASON, t, None) for t in sorted(versions)
        )
    counts.quarantined = upsert_quarantine(connection, bad, now=now)

    keyed = sorted(by_id)
    existing: dict[str, tuple[str, int]] = {}
    postgres = connection.dialect.name == "postgresql"
    # PostgreSQL: ONE statement joining an array of ids (per-chunk IN lists on a freshly
    # loaded, not yet analyzed table were planned as one sequential scan per chunk).
    for chunk in [keyed] if postgres else _chunks(keyed):
        ids_sql = "JOIN unnest(?::text[]) AS k(id) ON k.id = r.id" if postgres else ""
        where = "" if postgres else f"AND r.id IN ({', '.join('?' for _ in chunk)})"
        for row_id, digest, revision in _driver_rows(
            connection,
            f"SELECT r.id, r.row_sha256, r.revision FROM lamassu_raw_rows AS r {ids_sql} "
            f"WHERE r.source_table = ? {where}",
            (list(chunk), table) if postgres else (table, *chunk),
        ):
            existing[row_id] = (digest, revision)
    fiat = frame["fiat"].to_numpy(dtype=object) if "fiat" in frame.columns else None
    new: list[int] = []
    changed: list[tuple[int, int]] = []  # (row index, new revision)
    unchanged: list[str] = []
    digests: dict[int, str] = {}
    for row_id in keyed:
        index = by_id[row_id]
        digest = digests[index] = hashlib.sha256(texts[index].encode()).hexdigest()
        previous = existing.get(row_id)
        if previous is None:
            new.append(index)
        elif previous[0] != digest:
            changed.append((index, previous[1] + 1))
        else:
            unchanged.append(row_id)
    if fiat is not None:
        for row_id in keyed:
            # An unreadable fiat is validation's to quarantine; this total is informational.
            with contextlib.suppress(MoneyParseError, AttributeError):
                counts.fiat_total += parse_decimal(fiat[by_id[row_id]] or "0")

    bulk.insert_columns(
        connection,
        lamassu_raw_rows,
        {
            "source_table": table,
            "id": [ids[i] for i in new],
            "created": [created[i] for i in new],
            "business_day": [days[i] for i in new],
            "row_json": [texts[i] for i in new],
            "row_sha256": [digests[i] for i in new],
            "revision": 1,
            "first_seen_at": now,
            "last_seen_at": now,
        },
        len(new),
    )
    if changed:
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
            [
                {"t": table, "i": ids[i], "created": created[i], "business_day": days[i],
                 "row_json": texts[i], "row_sha256": digests[i], "revision": revision,
                 "last_seen_at": now}
                for i, revision in changed
            ],
        )  # fmt: skip
    versions = [(i, 1) for i in new] + changed
    bulk.insert_columns(
        connection,
        lamassu_raw_revisions,
        {
            "source_table": table,
            "id": [ids[i] for i, _ in versions],
            "revision": [r for _, r in versions],
            "row_json": [texts[i] for i, _ in versions],
            "row_sha256": [digests[i] for i, _ in versions],
            "seen_at": now,
        },
        len(versions),
    )
    if unchanged:
        process = lamassu_raw_rows.c.last_seen_at.type._cached_bind_processor(  # noqa: SLF001
            connection.dialect
        )
        seen_at = process(now) if process else now
        if postgres:
            _driver_rows(
                connection,
                "UPDATE lamassu_raw_rows AS r SET last_seen_at = ? "
                "FROM unnest(?::text[]) AS k(id) WHERE r.source_table = ? AND r.id = k.id",
                (seen_at, unchanged, table),
            )
        for chunk in [] if postgres else _chunks(unchanged):
            _driver_rows(
                connection,
                "UPDATE lamassu_raw_rows SET last_seen_at = ? WHERE source_table = ? "
                f"AND id IN ({', '.join('?' for _ in chunk)})",
                (seen_at, table, *chunk),
            )
    # A cleanly keyed version of an id resolves the keying problems quarantined before.
    _resolve(connection, table, keyed, now=now, reasons=KEYING_REASONS)
    counts.new, counts.changed, counts.unchanged = len(new), len(changed), len(unchanged)
    counts.ids = keyed
    return counts


def _resolve(
    connection: sa.Connection,
    table: str,
    ids: Sequence[str],
    *,
    now: datetime,
    reasons: Sequence[str] | None = None,
    except_reasons: Sequence[str] = (),
) -> int:
    """Mark unresolved quarantine rows of these ids resolved (optionally only some reasons).

    Unresolved quarantine rows are few: read them once, instead of one ``UPDATE … IN`` per
    chunk of 2 000 ids, and update only those whose id is among ``ids``.
    """
    q = quarantine.c
    query = sa.select(q.quarantine_id, q.source_id).where(
        q.source_table == table, q.resolved_at.is_(None)
    )
    if reasons is not None:
        query = query.where(q.reason.in_(list(reasons)))
    if except_reasons:
        query = query.where(q.reason.not_in(list(except_reasons)))
    wanted = set(ids)
    found = [qid for qid, source_id in connection.execute(query) if source_id in wanted]
    resolved = 0
    for chunk in _chunks(found):
        resolved += connection.execute(
            quarantine.update()
            .where(q.quarantine_id.in_(chunk), q.resolved_at.is_(None))
            .values(resolved_at=now)
        ).rowcount
    return resolved


def record_fetch(
    c: sa.Connection,
    window_start: datetime,
    window_end: datetime,
    landed_at: datetime,
    run_id: str | None = None,
    *,
    rows: Mapping[str, int] | None = None,
) -> int:
    """Record that every Lamassu row created in ``[window_start, window_end)`` has landed.

    Call it in the transaction that lands the fetch's rows (a failed fetch records nothing).
    ``rows``: rows fetched per Lamassu table (``cash_out_txs`` …), optional. Returns the
    ``fetch_id``. The window is half-open; ``window_start < window_end`` (a CHECK).
    """
    rows = rows or {}
    values = {
        "window_start": window_start, "window_end": window_end, "landed_at": landed_at,
        "dagster_run_id": run_id,
        **{f"{t}_rows": rows.get(t) for t in (CASH_OUT_TXS, CASH_OUT_ACTIONS, CASH_IN_TXS)},
    }  # fmt: skip
    return c.execute(lamassu_fetches.insert().values(values)).inserted_primary_key[0]


def landed_through(c: sa.Connection, start: datetime) -> datetime | None:
    """End of the contiguous landed coverage from ``start``, or None if no window covers it.

    Windows are half-open ``[window_start, window_end)``: one covers ``start`` when
    ``window_start <= start < window_end``. From there, windows that overlap or touch (the next
    starts at or before the coverage's end) are merged, in any order they were recorded; the
    first gap ends the coverage. So every Lamassu row created in ``[start, result)`` has landed.
    """
    f = lamassu_fetches.c
    reach: datetime | None = None
    for window_start, window_end in c.execute(
        sa.select(f.window_start, f.window_end)
        .where(f.window_end > start)
        .order_by(f.window_start, f.window_end.desc())
    ).tuples():
        if window_start > (reach or start):
            break  # a gap (or, before any coverage, nothing covers start)
        reach = window_end if reach is None else max(reach, window_end)
    return reach


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


def keying_quarantined_ids(connection: sa.Connection, table: str = CASH_OUT_TXS) -> set[str]:
    """Ids whose latest fetch could not be keyed (the same id twice with different content)
    and that no cleanly keyed version has resolved since: their current version is quarantined,
    whatever older version ``lamassu_raw_rows`` still holds."""
    q = quarantine.c
    return set(
        connection.execute(
            sa.select(q.source_id).where(
                q.source_table == table,
                q.resolved_at.is_(None),
                q.reason == DUPLICATE_ID_REASON,
            )
        ).scalars()
    )


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
    that already used it is flagged downstream instead of silently kept. That includes an id
    whose latest fetch held it twice with different content (:func:`land_export` quarantined
    every copy and kept the older landed version, which is what validation reads): it stays
    ineligible, and that quarantine open, until a fetch brings the id once again.
    """
    counts = ValidationCounts(valid=len(valid))
    records = _records(valid)
    ids = [r["id"] for r in records]
    unkeyed = keying_quarantined_ids(connection)
    revoked: set[str] = set()
    for record in records:
        if record["id"] in unkeyed:
            record["eligible"] = False
            record["ineligible_reason"] = f"quarantined: {DUPLICATE_ID_REASON}"
            revoked.add(record["id"])
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
                if record["id"] in revoked:
                    counts.withdrawn.append(record["id"])
                else:
                    counts.newly_ineligible.append(record["id"])
            updates.append({**record, "validated_at": now, "key": record["id"]})
        else:
            counts.unchanged += 1
    bulk.insert_rows(connection, validated_cash_outs, inserts)
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
    # Validation resolves only what validation quarantined, and nothing of an id whose latest
    # fetch was unkeyable: its (older) landed version validating proves nothing about it.
    counts.resolved = _resolve(
        connection, CASH_OUT_TXS, [i for i in ids if i not in unkeyed], now=now,
        except_reasons=KEYING_REASONS,
    )  # fmt: skip
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
