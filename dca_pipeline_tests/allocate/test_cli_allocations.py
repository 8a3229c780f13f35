"""`dca-pipeline allocations issues|acknowledge|plan` (in-process), on SQLite and PostgreSQL.

``plan`` is the §4a dry run: it shows what the next allocation run would append and writes
nothing (every table's row count is the same before and after), and what it shows is what the
run then appends.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from dca_pipeline.cli import main
from dca_pipeline.domain.rules import BusinessRules
from dca_pipeline.ledger import allocations as al
from dca_pipeline.ledger import schema as s
from dca_pipeline_tests.allocate.conftest import LATER
from dca_pipeline_tests.allocate.seeding import (
    Scenario,
    add_cash_outs,
    add_client,
    cash_out_row,
    deposit,
    seed_scenario,
)

RULES = BusinessRules()
START = date(2025, 1, 1)
SCENARIO = Scenario(date(2025, 3, 1), date(2025, 3, 3), flow_clients=5, fixed_clients=2,
                    cash_outs_per_day=3)
SETTINGS = ("DCA_TIMEZONE", "DCA_CURRENCY", "DCA_CONFIRMED_ONLY", "DCA_FIXED_RUN_TIME",
            "DCA_MAX_DAILY_GTQ", "DCA_OVERLAP_HOURS")


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The code location's settings, from the environment: the defaults, start 2025-01-01."""
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DCA_START_DATE", START.isoformat())
    monkeypatch.setenv("DCA_SETTLE_MINUTES", "15")


def _url(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _run(engine: sa.Engine, first: date, last: date) -> al.RangeOutcome:
    return al.allocate_range(engine, RULES, first, last, now=LATER, settle_minutes=15,
                             start_day=START)


def _counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as c:
        return {
            t.name: c.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in s.metadata.sorted_tables
        }


def _plan(engine: sa.Engine, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[
    int, str, str
]:
    code = main(["allocations", "plan", *args, "--ledger-url", _url(engine)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _stored(engine: sa.Engine, after_seq: int) -> list[dict[str, object]]:
    e, line = s.allocation_events, s.allocation_lines
    with engine.connect() as c:
        events = c.execute(sa.select(e).where(e.c.seq > after_seq).order_by(e.c.seq)).all()
        out = []
        for ev in events:
            lines = c.execute(
                sa.select(line.c.kind, line.c.recipient_id, line.c.fiat_cents, line.c.sats)
                .where(line.c.source_id == ev.source_id).order_by(line.c.line_no)
            ).all()
            out.append({
                "seq": ev.seq, "event_id": ev.source_id, "kind": ev.source_kind,
                "cash_out_id": ev.cash_out_id, "business_day": ev.business_day.isoformat(),
                "as_of": ev.as_of.isoformat(), "fiat_cents": ev.fiat_cents,
                "principal_sats": ev.principal_sats, "commission_sats": ev.commission_sats,
                "late": bool(json.loads(ev.inputs_json).get("late", False)),
                "lines": [
                    {"kind": k, "recipient_id": r, "fiat_cents": f, "sats": x}
                    for k, r, f, x in lines
                ],
            })
    return out


def test_plan_shows_what_the_next_run_appends_and_writes_nothing(engine, capsys) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as c:
        seed_scenario(c, SCENARIO)
    _run(engine, SCENARIO.first_day, SCENARIO.first_day)
    early = RULES.day_start_utc(SCENARIO.first_day) + timedelta(minutes=10)
    with engine.begin() as c:  # arrives after later events of its day were allocated: late
        add_cash_outs(c, [cash_out_row("tx-late", early, 20_000, 2_600_000)])
    with engine.connect() as c:
        last = int(c.execute(sa.select(sa.func.max(s.allocation_events.c.seq))).scalar_one())
    before = _counts(engine)

    code, out, err = _plan(engine, capsys, "--from", "2025-03-02", "--to", "2025-03-03",
                           "--json")
    assert (code, err) == (0, "")
    planned = json.loads(out)
    assert _counts(engine) == before
    events = planned["events"]
    assert [e["seq"] for e in events] == list(range(last + 1, last + 1 + len(events)))
    assert events[0]["event_id"] == "tx-late" and events[0]["late"] is True
    assert [r["kind"] for r in planned["reports"]] == ["late"]
    assert {e["kind"] for e in events} == {"cash_out", "fixed"}
    assert all(not e["late"] for e in events[1:])
    assert {e["business_day"] for e in events[1:]} == {"2025-03-02", "2025-03-03"}

    code, text, err = _plan(engine, capsys, "--from", "2025-03-02", "--to", "2025-03-03")
    assert (code, err) == (0, "")
    assert _counts(engine) == before
    rows = [line.split() for line in text.splitlines() if line.split()[0].isdigit()]
    assert [(int(r[0]), r[1], r[2], r[3], r[-1]) for r in rows] == [
        (e["seq"], e["kind"], e["event_id"], e["business_day"], "late" if e["late"] else "-")
        for e in events
    ]
    late = rows[0]
    assert late[4] == "200.00" and int(late[5]) == events[0]["principal_sats"]
    assert f"{len(events)} event(s) would be appended, 1 report(s)" in text
    assert "report late tx-late (2025-03-01)" in text

    # The run appends exactly what the dry run showed.
    outcome = _run(engine, date(2025, 3, 2), date(2025, 3, 3))
    assert outcome.reproduced and outcome.events_written == len(events)
    shown = [{k: v for k, v in e.items() if k != "event_time"} for e in events]
    assert _stored(engine, last) == shown
    # Nothing left to do: an empty plan.
    code, text, _ = _plan(engine, capsys, "--from", "2025-03-01", "--to", "2025-03-03")
    assert code == 0 and "0 event(s) would be appended, 0 report(s)" in text


def test_plan_refusal_exits_2_with_one_line_and_writes_nothing(engine, capsys) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as c:
        seed_scenario(c, SCENARIO)
    before = _counts(engine)
    code, out, err = _plan(engine, capsys, "--from", "2025-03-02", "--to", "2025-03-03")
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and "materialize from 2025-03-01" in err
    code, out, err = _plan(engine, capsys, "--from", "2025-03-03", "--to", "2025-03-02")
    assert code == 2 and len(err.splitlines()) == 1 and "after --to" in err
    with pytest.raises(SystemExit) as exc:  # argparse: not a date
        main(["allocations", "plan", "--from", "2025-13-01", "--to", "2025-03-02"])
    assert exc.value.code == 2 and "not a date" in capsys.readouterr().err
    assert _counts(engine) == before


def test_plan_takes_only_landed_days_like_the_run(engine, capsys) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as c:
        seed_scenario(c, SCENARIO)
        c.execute(s.lamassu_fetches.insert().values(  # only 2025-03-01 (local) has landed
            window_start=RULES.day_start_utc(date(2025, 3, 1)),
            window_end=RULES.day_start_utc(date(2025, 3, 2)), landed_at=LATER,
        ))
    before = _counts(engine)
    code, out, err = _plan(engine, capsys, "--from", "2025-03-02", "--to", "2025-03-02")
    assert code == 2 and "2025-03-02 was never fetched" in err and len(err.splitlines()) == 1
    code, out, _ = _plan(engine, capsys, "--from", "2025-03-01", "--to", "2025-03-03", "--json")
    assert code == 0
    days = {e["business_day"] for e in json.loads(out)["events"]}
    assert days == {"2025-03-01"}
    assert _counts(engine) == before
    outcome = al.allocate_range(engine, RULES, date(2025, 3, 1), date(2025, 3, 3), now=LATER,
                                settle_minutes=15, start_day=START, only_landed=True)
    assert outcome.events_written == len(json.loads(out)["events"])


def test_plan_with_nothing_to_allocate_yet_is_empty(engine, capsys) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as c:  # a fixed client, and no cash-out ever: the run appends nothing
        add_client(c, "F", mode="fixed", daily_limit_cents=5_000)
        deposit(c, "dF", "F", 100_000)
    code, text, _ = _plan(engine, capsys, "--from", "2025-03-01", "--to", "2025-03-02")
    assert code == 0 and "0 event(s) would be appended, 0 report(s)" in text
    assert _run(engine, date(2025, 3, 1), date(2025, 3, 2)).events_written == 0


def test_plan_preview_equals_the_run_when_nothing_is_allocatable_yet(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as c:
        add_client(c, "F", mode="fixed", daily_limit_cents=5_000)
        deposit(c, "dF", "F", 100_000)
    plan = al.plan_preview(engine, RULES, date(2025, 3, 1), date(2025, 3, 2), now=LATER,
                           settle_minutes=15, start_day=START)
    outcome = _run(engine, date(2025, 3, 1), date(2025, 3, 2))
    assert len(plan.events) == outcome.events_written == 0


def test_issues_lists_open_reports_and_mismatches_with_filters(engine, capsys) -> None:  # type: ignore[no-untyped-def]
    t = datetime(2025, 6, 9, 16, 0, tzinfo=UTC)
    day = RULES.business_day(t)
    with engine.begin() as c:
        add_client(c, "A")
        deposit(c, "dA", "A", 900_000)
        add_cash_outs(c, [cash_out_row("first", t - timedelta(hours=1), 10_000, 1_300_000)])
    _run(engine, day, day)
    with engine.begin() as c:
        add_cash_outs(c, [cash_out_row("late", t - timedelta(hours=2), 10_000, 1_300_000)])
    assert [r.kind for r in _run(engine, day, day).reports] == ["late"]
    with engine.begin() as c:  # a mismatch (a replay closes it again once it reproduces)
        c.execute(s.allocation_issues.insert().values(
            source_id=f"replay:{day}…{day}", kind="mismatch", business_day=day,
            detail="event 1 first: line 1 ledger flow A fiat=1 != recomputed flow A fiat=2",
            detected_at=LATER,
        ))
    url = _url(engine)

    def issues(*args: str) -> list[dict]:
        assert main(["allocations", "issues", "--json", *args, "--ledger-url", url]) == 0
        return json.loads(capsys.readouterr().out)

    found = issues()
    assert [(i["kind"], i["source_id"], i["open"]) for i in found] == [
        ("late", "late", True), ("mismatch", f"replay:{day}…{day}", True),
    ]
    late_id = found[0]["issue_id"]
    assert main(["allocations", "acknowledge", str(late_id), "--note", "seen, nothing to do",
                 "--ledger-url", url]) == 0
    assert "unchanged" in capsys.readouterr().out
    assert [i["kind"] for i in issues()] == ["mismatch"]
    assert issues("--kind", "late") == []
    (late,) = issues("--all", "--kind", "late")
    assert late["open"] is False and late["resolution"] == "acknowledged: seen, nothing to do"
    assert [i["kind"] for i in issues("--all")] == ["late", "mismatch"]
    assert [i["kind"] for i in issues("--kind", "late", "--kind", "mismatch")] == ["mismatch"]

    assert main(["allocations", "issues", "--ledger-url", url]) == 0
    text = capsys.readouterr().out
    assert f"mismatch {day} replay:" in text and f"#{late_id} " not in text
    assert main(["allocations", "issues", "--kind", "late", "--ledger-url", url]) == 0
    assert capsys.readouterr().out.strip() == "no open allocation issues of kind late"
    assert main(["allocations", "issues", "--all", "--kind", "late", "--ledger-url", url]) == 0
    text = capsys.readouterr().out
    assert f"#{late_id} late {day} late  [closed: acknowledged: seen" in text
    assert "arrived after a later event" in text
    # Acknowledging twice, or an unknown id: refused with one line.
    assert main(["allocations", "acknowledge", str(late_id), "--note", "again",
                 "--ledger-url", url]) == 2
    assert "no open allocation issue" in capsys.readouterr().err


@pytest.mark.postgres
def test_a_ledger_that_fails_is_one_line_exit_1_without_the_password(
    postgres_server_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parts = urlsplit(postgres_server_dsn)
    url = f"postgresql+psycopg2://nobody:hunter2@{parts.hostname}:{parts.port or 5432}/no_such_db"
    for argv in (["issues"], ["plan", "--from", "2025-03-01", "--to", "2025-03-01"]):
        assert main(["allocations", *argv, "--ledger-url", url]) == 1
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and "the ledger failed" in err and "hunter2" not in err


def test_plan_of_days_whose_replay_differs_refuses(engine, capsys) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as c:
        seed_scenario(c, SCENARIO)
    _run(engine, SCENARIO.first_day, SCENARIO.first_day)
    with engine.begin() as c:  # an extra line slipped into an allocated event
        victim = c.execute(sa.select(s.allocation_events.c.source_id).where(
            s.allocation_events.c.source_kind == "cash_out").limit(1)).scalar_one()
        c.execute(s.allocation_lines.insert().values(
            source_id=victim, line_no=99, kind="flow", recipient_id="flow-0001",
            wallet_id="wallet-flow-0001", business_day=SCENARIO.first_day, fiat_cents=1, sats=1,
            created_at=LATER,
        ))
    before = _counts(engine)
    code, out, err = _plan(engine, capsys, "--from", "2025-03-01", "--to", "2025-03-02")
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert "does not reproduce the ledger" in err and victim in err
    assert _counts(engine) == before  # not even a mismatch issue: a dry run writes nothing
