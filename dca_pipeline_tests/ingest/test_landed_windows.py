"""Landed windows (business-rules §4a "only landed data counts"): ``lamassu_fetches``.

``landed_through`` merges the recorded half-open windows that overlap or touch, from the one
covering ``start``; the raw ingest asset records its window in the transaction that lands its
rows (clipped to the instant the fetch started), and a failed fetch records nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from dca_pipeline.defs.ingest.assets import landed_window
from dca_pipeline.defs.settings import BusinessSettings, business_days
from dca_pipeline.ledger import landing
from dca_pipeline.ledger.landing import landed_through, record_fetch
from dca_pipeline.ledger.schema import lamassu_fetches
from dca_pipeline.sources import FetchWindow, FolderLamassuSource
from dca_pipeline_tests.ingest.conftest import lamassu_raw_rows, materialize, table_rows

SAMPLE = Path(__file__).parents[2] / "data" / "sample" / "lamassu"
T0 = datetime(2025, 6, 1, 6, 0, tzinfo=UTC)
GUATEMALA = timezone(timedelta(hours=-6))


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def _seed(ledger, windows: list[tuple[float, float]]) -> None:  # type: ignore[no-untyped-def]
    with ledger.begin() as c:
        for start, end in windows:
            record_fetch(c, h(start), h(end), landed_at=h(end))


def _through(ledger, start: float) -> datetime | None:  # type: ignore[no-untyped-def]
    with ledger.begin() as c:
        return landed_through(c, h(start))


LANDED_THROUGH_CASES = [
    # (recorded windows in hours after T0, start, expected end or None)
    ("nothing_recorded", [], 0, None),
    ("one_window", [(0, 24)], 0, 24),
    ("start_inside", [(0, 24)], 10, 24),
    ("start_at_exclusive_end", [(0, 24)], 24, None),
    ("start_before_every_window", [(5, 24)], 0, None),
    ("touching", [(0, 24), (24, 48)], 0, 48),
    ("overlapping", [(0, 30), (20, 48)], 0, 48),
    ("gap_ends_coverage", [(0, 24), (25, 48), (48, 72)], 0, 24),
    ("start_after_the_gap", [(0, 24), (25, 48), (48, 72)], 30, 72),
    ("start_in_the_gap", [(0, 24), (25, 48)], 24.5, None),
    ("recorded_out_of_order", [(48, 72), (0, 24), (60, 90), (24, 50)], 0, 90),
    ("contained_window_does_not_shrink", [(0, 72), (10, 20), (72, 80)], 0, 80),
    ("longer_of_two_with_same_start", [(0, 10), (0, 30), (30, 31)], 0, 31),
    ("windows_wholly_before_start_ignored", [(-48, -24), (-10, 5)], 0, 5),
    ("gap_after_start_covered_by_overlap_fetch", [(-48, 24), (0, 48), (49, 60)], 0, 48),
]


@pytest.mark.parametrize(("windows", "start", "expected"), [c[1:] for c in LANDED_THROUGH_CASES],
                         ids=[c[0] for c in LANDED_THROUGH_CASES])  # fmt: skip
def test_landed_through_merges_windows_from_the_one_covering_start(
    ledger, windows, start, expected
) -> None:  # type: ignore[no-untyped-def]
    _seed(ledger, windows)
    result = _through(ledger, start)
    assert result == (None if expected is None else h(expected))
    if result is not None:
        assert result.tzinfo is not None and result.utcoffset() == timedelta(0)


def test_record_fetch_stores_the_window_run_and_counts(ledger) -> None:  # type: ignore[no-untyped-def]
    local = T0.astimezone(GUATEMALA)  # any aware instant; stored and compared as UTC
    with ledger.begin() as c:
        first = record_fetch(c, local, h(24), h(25), "run-1", rows={"cash_out_txs": 3})
        second = record_fetch(c, h(24), h(48), h(49))
        assert landed_through(c, local) == h(48)
    assert second > first
    rows = {r["fetch_id"]: r for r in table_rows(ledger, lamassu_fetches)}
    assert rows[first]["window_start"] == local.astimezone(UTC)
    assert rows[first]["dagster_run_id"] == "run-1"
    assert (rows[first]["cash_out_txs_rows"], rows[first]["cash_in_txs_rows"]) == (3, None)
    assert rows[second]["dagster_run_id"] is None


def test_an_empty_or_reversed_window_is_refused(ledger) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(sa.exc.IntegrityError), ledger.begin() as c:
        record_fetch(c, h(24), h(24), h(25))
    assert table_rows(ledger, lamassu_fetches) == []


def test_landed_window_clips_the_end_to_the_fetch_instant() -> None:
    window = FetchWindow(h(0), h(72))
    assert landed_window(window, h(100)) == window  # a past window: all of it
    assert landed_window(window, h(50)) == FetchWindow(h(0), h(50))  # today: up to the fetch
    assert landed_window(window, h(0)) is None  # nothing yet
    local = h(50).astimezone(GUATEMALA)
    assert landed_window(window, local) == FetchWindow(h(0), h(50))


# --------------------------------------------------------------------- through the asset
@pytest.mark.dagster
def test_the_raw_asset_records_its_window_in_the_landing_run(ledger, instance) -> None:  # type: ignore[no-untyped-def]
    source = FolderLamassuSource(directory=str(SAMPLE))
    settings = BusinessSettings(overlap_hours=48)
    result = materialize(source, ledger, instance, "2025-06-02", "2025-06-04", settings=settings)
    assert result.success
    [fetch] = table_rows(ledger, lamassu_fetches)
    # [start of 06-02 − 48 h, end of 06-04) in UTC (Guatemala is UTC−6): a past window, whole.
    assert fetch["window_start"] == datetime(2025, 5, 31, 6, 0, tzinfo=UTC)
    assert fetch["window_end"] == datetime(2025, 6, 5, 6, 0, tzinfo=UTC)
    assert fetch["dagster_run_id"] == result.run_id
    landed = [
        r for r in table_rows(ledger, lamassu_raw_rows) if r["source_table"] == "cash_out_txs"
    ]
    assert fetch["cash_out_txs_rows"] == len(landed) > 0
    assert fetch["landed_at"] == max(r["last_seen_at"] for r in landed)

    # The next day fetched later touches (overlaps) the first: coverage extends.
    assert materialize(source, ledger, instance, "2025-06-05", settings=settings).success
    start_day = datetime(2025, 6, 2, 6, 0, tzinfo=UTC)
    with ledger.begin() as c:
        assert landed_through(c, start_day) == datetime(2025, 6, 6, 6, 0, tzinfo=UTC)
    # 06-08 alone, without overlap: 06-06 and 06-07 never fetched, coverage stays at 06-05's end.
    assert materialize(source, ledger, instance, "2025-06-08",
                       settings=BusinessSettings(overlap_hours=0)).success  # fmt: skip
    with ledger.begin() as c:
        assert landed_through(c, start_day) == datetime(2025, 6, 6, 6, 0, tzinfo=UTC)


@pytest.mark.dagster
def test_a_live_run_of_today_records_up_to_when_it_fetched(sqlite_ledger, instance) -> None:  # type: ignore[no-untyped-def]
    today = business_days.get_last_partition_key()
    assert today is not None
    before = datetime.now(UTC)
    result = materialize(FolderLamassuSource(directory=str(SAMPLE)), sqlite_ledger, instance,
                         today)  # fmt: skip
    after = datetime.now(UTC)
    assert result.success
    [fetch] = table_rows(sqlite_ledger, lamassu_fetches)
    day_end = business_days.time_window_for_partition_key(today).end
    assert day_end > after  # today's partition ends in the future …
    assert before <= fetch["window_end"] <= after  # … so only what existed at the fetch counts


@pytest.mark.dagster
def test_a_failed_fetch_records_no_window(sqlite_ledger, instance, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "lamassu"
    folder.mkdir()
    for table in ("cash_out_txs", "cash_out_actions"):  # cash_in_txs.csv is missing
        (folder / f"{table}.csv").write_bytes((SAMPLE / f"{table}.csv").read_bytes())
    source = FolderLamassuSource(directory=str(folder))
    assert not materialize(source, sqlite_ledger, instance, "2025-06-03").success
    assert table_rows(sqlite_ledger, lamassu_fetches) == []

    # A file that is not a valid export: refused, nothing landed, no window.
    (folder / "cash_in_txs.csv").write_text("not,a\nlamassu,export\n")
    assert not materialize(source, sqlite_ledger, instance, "2025-06-03").success
    assert table_rows(sqlite_ledger, lamassu_fetches) == []
    assert table_rows(sqlite_ledger, lamassu_raw_rows) == []


@pytest.mark.dagster
def test_rows_and_window_land_in_one_transaction(
    sqlite_ledger, instance, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """Recording the window failing rolls the landed rows back too (and vice versa)."""

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("ledger hiccup while recording the window")

    monkeypatch.setattr(landing, "record_fetch", broken)
    source = FolderLamassuSource(directory=str(SAMPLE))
    assert not materialize(source, sqlite_ledger, instance, "2025-06-03").success
    assert table_rows(sqlite_ledger, lamassu_raw_rows) == []
    assert table_rows(sqlite_ledger, lamassu_fetches) == []
    monkeypatch.undo()
    assert materialize(source, sqlite_ledger, instance, "2025-06-03").success
    assert len(table_rows(sqlite_ledger, lamassu_fetches)) == 1
