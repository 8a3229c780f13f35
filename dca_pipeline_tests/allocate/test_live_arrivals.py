"""Acceptance: live allocation that never stops (business-rules §4a, §5, §8), items 1–6.

Through the real Dagster assets (raw multi-asset → ``validated_cash_outs`` → ``allocations``,
one run per day or range), a folder source whose CSV files are rewritten between runs the way
Lamassu data arrives (rows of the bundled sample week, 2025-06), and both ledgers (SQLite and
PostgreSQL, the ``ledger`` fixture). Each test asserts the §4a outcome on the ledger, that every
blocking money check passed, and the WARN report checks where they matter. The fetch window of
a run over day D is [D − 48 h, D + 1) local, so a row that reaches the export late is fetched
by any run up to two days after its own day. One more test: a duplicate pair that recurs
after it was resolved is quarantined again, and revokes the re-allocation.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

import dagster as dg
import pytest
import sqlalchemy as sa

from dca_pipeline.cli import main as cli
from dca_pipeline.defs.payout.gate import blocking_check_problems, money_check_keys
from dca_pipeline.defs.payout.jobs import payout_job
from dca_pipeline.defs.payout.resources import AlertsResource, lnbits_from_env
from dca_pipeline.ledger import allocations as al
from dca_pipeline.ledger import schema as s
from dca_pipeline.simulate import SimulationInputs, run_simulation
from dca_pipeline_tests.allocate.live_arrivals import (
    RULES,
    SAMPLE,
    SETTINGS,
    LamassuExport,
    Pipeline,
    allocation_metadata,
    assert_blocking_checks_pass,
    balances,
    counts,
    events,
    failure_message,
    is_eligible,
    issues,
    lines,
    live_allocations,
    net_by_cash_out,
    report_checks,
    sample_day_ids,
    sample_tx,
    seed_sample_admin,
    validated,
)

pytestmark = pytest.mark.dagster

D1, D2, D3, D4 = (date(2025, 6, day) for day in (1, 2, 3, 4))
ALL_REPORTS_QUIET = {"late_events": True, "revoked_cash_outs": True, "changed_cash_outs": True,
                     "moved_cash_outs": True, "skipped_fixed_runs": True}  # fmt: skip


@pytest.fixture
def pipeline(ledger, tmp_path) -> Pipeline:  # type: ignore[no-untyped-def]
    """The sample's clients (ana, bruno flow; carla paused; diego, elena fixed), deposits and
    70/30 commission; an empty Lamassu folder; a fresh Dagster instance."""
    seed_sample_admin(ledger)
    return Pipeline(ledger, LamassuExport(tmp_path / "lamassu"))


def _eligible(first: date, last: date | None = None) -> list[str]:
    return [i for i in sample_day_ids(first, last) if is_eligible(sample_tx(i))]


def _ok(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    """The run succeeded and every blocking check passed; returns the WARN report checks."""
    assert result.success, [failure_message(result)]
    assert_blocking_checks_pass(result)
    return report_checks(result)


def _gate_open(pipeline: Pipeline) -> None:
    """What the payout job reads first: no blocking money check stands in the way."""
    assert blocking_check_problems(pipeline.instance, money_check_keys()) == []


def _open(ledger, kind: str) -> list:  # type: ignore[no-untyped-def]
    return [i for i in issues(ledger) if i.kind == kind and i.closed_at is None]


def _event(ledger, source_id: str):  # type: ignore[no-untyped-def]
    (found,) = [e for e in events(ledger) if e.source_id == source_id]
    return found


def _by_day(ledger) -> dict[date, list[str]]:  # type: ignore[no-untyped-def]
    out: dict[date, list[str]] = {}
    for e in events(ledger):
        out.setdefault(e.business_day, []).append(e.source_id)
    return out


def _simulate(pipeline: Pipeline, first: date, last: date):  # type: ignore[no-untyped-def]
    """`dca-pipeline simulate` (its function API) on the folder's final export and the
    sample's admin files: (allocation result, deposits)."""
    folder = pipeline.export.folder
    result, deposits, _, allocated = run_simulation(
        SimulationInputs(
            cash_outs=folder / "cash_out_txs.csv",
            cash_out_actions=folder / "cash_out_actions.csv",
            clients=SAMPLE / "clients.csv",
            deposits=SAMPLE / "deposits.csv",
            commission=SAMPLE / "commission.csv",
            first_day=first,
            last_day=last,
        ),
        RULES,
    )
    assert allocated > 0
    return result, deposits


def _assert_equals_simulate(pipeline: Pipeline, first: date, last: date) -> None:
    expected, deposits = _simulate(pipeline, first, last)
    with pipeline.ledger.engine().connect() as c:
        assert al.ledger_lines_in_order(c, first, last) == al.simulate_like_lines(expected)
    assert balances(pipeline.ledger) == expected.balances(deposits)


# --------------------------------------------------------------------------- 1. in order
def test_a_later_day_alone_refuses_and_writes_nothing_then_in_order_equals_simulate(
    pipeline: Pipeline, ledger
) -> None:  # type: ignore[no-untyped-def]
    export = pipeline.export
    export.add_sample(sample_day_ids(D1, D3))  # Lamassu has shown three days

    # Empty ledger: day 3 alone fails with ONE line naming day 1, and writes nothing.
    refused = pipeline.run(D3)
    assert not refused.success
    message = failure_message(refused)
    assert "\n" not in message and f"materialize from {D1}" in message, message
    assert counts(ledger) == (0, 0, 0)  # no event, no line, no (late) issue
    assert not [e for e in refused.get_asset_materialization_events()
                if e.asset_key.to_user_string() == "flow_allocations"]  # fmt: skip

    # Day 1 allocated; day 3 alone again: refused, naming day 2, nothing written.
    assert _ok(pipeline.run(D1)) == ALL_REPORTS_QUIET
    after_day_1 = counts(ledger)
    refused = pipeline.run(D3)
    assert not refused.success
    message = failure_message(refused)
    assert "\n" not in message and f"materialize from {D2}" in message, message
    assert counts(ledger) == after_day_1

    # In order: day 2, then day 4 arrives and days 3–4 run as one range.
    assert _ok(pipeline.run(D2)) == ALL_REPORTS_QUIET
    export.add_sample(sample_day_ids(D4))
    assert _ok(pipeline.run(D3, D4)) == ALL_REPORTS_QUIET

    # Everything allocated exactly once, in (event time, rank, id) order, sequence 1, 2, 3 …
    stored = events(ledger)
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
    cash_outs = [e for e in stored if e.source_kind == "cash_out"]
    assert sorted(e.source_id for e in cash_outs) == sorted(_eligible(D1, D4))
    assert all(e.cash_out_id == e.source_id for e in cash_outs)
    assert [e.source_id for e in stored if e.source_kind == "fixed"] == [
        f"fixed:{d}" for d in (D1, D2, D3, D4)
    ]
    assert {e.source_kind for e in stored} == {"cash_out", "fixed"}
    keys = [(e.event_time, e.event_rank, e.cash_out_id or e.source_id) for e in stored]
    assert keys == sorted(keys)
    assert not any(json.loads(e.inputs_json).get("late") for e in stored)
    assert issues(ledger) == []  # no late event, no mismatch: the refusals left no trace
    _assert_equals_simulate(pipeline, D1, D4)

    # Re-materializing the whole period replays it exactly and appends nothing.
    again = pipeline.run(D1, D4)
    assert _ok(again) == ALL_REPORTS_QUIET
    meta = allocation_metadata(again)
    assert (meta["events_written"], meta["events_verified"]) == (0, len(stored))
    assert counts(ledger) == (len(stored), len(lines(ledger)), 0)


# --------------------------------------------------------------------------- 2. late, fixed
def test_a_cash_out_arriving_late_inside_a_fixed_runs_rate_window_is_appended_late(
    pipeline: Pipeline, ledger
) -> None:  # type: ignore[no-untyped-def]
    export = pipeline.export
    late_id = sample_tx("c0d24c51")["id"]  # 2025-06-02 08:51 local, 1000.00 GTQ (LN)
    export.add_sample(sample_day_ids(D1))
    assert _ok(pipeline.run(D1)) == ALL_REPORTS_QUIET
    # Day 2 without it: the ATM has not reported it yet.
    export.add_sample(i for i in sample_day_ids(D2) if i != late_id)
    assert _ok(pipeline.run(D2)) == ALL_REPORTS_QUIET
    fixed = _event(ledger, f"fixed:{D2}")
    fixed_lines = [x for x in lines(ledger) if x.source_id == fixed.source_id]
    assert fixed.source_kind == "fixed" and len(fixed_lines) == 2  # diego, elena
    rate_ids = json.loads(fixed.inputs_json)["rate_cash_out_ids"]
    # §5: the eligible cash-outs of [run time − 24 h, run time) that had landed, without it.
    run_at = RULES.fixed_run_at(D2)
    window = [i for i in _eligible(D1, D2) if i != late_id
              and run_at - timedelta(hours=24) <= validated(ledger, i).event_time < run_at]
    assert sorted(rate_ids) == sorted(window) and late_id not in rate_ids
    num, den = json.loads(fixed.inputs_json)["rate_sats_per_cent"].split("/")
    used = [validated(ledger, i) for i in window]
    assert Fraction(int(num), int(den)) == Fraction(
        sum(v.principal_sats for v in used), sum(v.fiat_cents for v in used)
    )
    last_before = events(ledger)[-1]

    # It arrives with day 3's rows (inside the 48 h fetch overlap of the day-3 run).
    export.add_sample([late_id, *sample_day_ids(D3)])
    reports = _ok(pipeline.run(D3))
    assert reports == {**ALL_REPORTS_QUIET, "late_events": False}  # WARN only

    late = _event(ledger, late_id)
    assert late.source_kind == "cash_out" and late.cash_out_id == late_id
    assert json.loads(late.inputs_json)["late"] is True
    # Appended right after what was already in the sequence, before day 3's events; its own
    # event time and business day, computed as of the latest event time already allocated.
    assert late.seq == last_before.seq + 1
    assert late.business_day == D2 and late.event_time == validated(ledger, late_id).event_time
    assert late.as_of == max(e.event_time for e in events(ledger) if e.seq < late.seq)
    assert min(e.seq for e in events(ledger) if e.business_day == D3) > late.seq
    v = validated(ledger, late_id)
    assert net_by_cash_out(ledger)[late_id] == (v.fiat_cents, v.principal_sats)
    (report,) = _open(ledger, "late")
    assert report.source_id == late_id and report.business_day == D2

    # The fixed run of day 2 is not recomputed: same event, same stored rate, same lines.
    assert _event(ledger, f"fixed:{D2}") == fixed
    assert [x for x in lines(ledger) if x.source_id == fixed.source_id] == fixed_lines
    assert [e.source_id for e in events(ledger)].count(f"fixed:{D2}") == 1

    # Later days keep allocating, and a replay of the whole period reproduces the ledger.
    export.add_sample(sample_day_ids(D4))
    before = len(events(ledger))
    again = pipeline.run(D1, D4)
    assert _ok(again)["late_events"] is False  # still unacknowledged, still only a warning
    assert allocation_metadata(again)["events_verified"] == before
    assert _by_day(ledger)[D4] and all(
        i in live_allocations(ledger) for i in _eligible(D1, D4)
    )
    assert all(len(v) == 1 for v in live_allocations(ledger).values())
    _gate_open(pipeline)


# --------------------------------------------------------------------------- 3. moved
def test_an_allocated_cash_out_whose_dispense_arrives_after_midnight_is_only_reported_moved(
    pipeline: Pipeline, ledger
) -> None:  # type: ignore[no-untyped-def]
    export = pipeline.export
    moved_id = "7a3c9e51-0b7d-4e2a-9f61-2d8c4b5e6f70"
    export.add_sample(sample_day_ids(D1))
    # Confirmed at 23:41 local on day 1; the dispense action is not in the export yet, so its
    # event time is confirmed_at (§2).
    export.add_copy(
        "13fe666d", moved_id, created=datetime(2025, 6, 2, 5, 40, 5, tzinfo=UTC),
        confirmed=datetime(2025, 6, 2, 5, 41, 10, tzinfo=UTC), dispensed=None,
    )
    assert _ok(pipeline.run(D1)) == ALL_REPORTS_QUIET
    allocation = _event(ledger, moved_id)
    assert allocation.business_day == D1
    allocated_lines = [x for x in lines(ledger) if x.source_id == moved_id]

    # Its dispense action arrives with day 2's rows: 00:04:30 local on day 2.
    dispensed = datetime(2025, 6, 2, 6, 4, 30, tzinfo=UTC)
    export.add_dispense(moved_id, dispensed)
    export.add_sample(sample_day_ids(D2))
    assert _ok(pipeline.run(D2)) == {**ALL_REPORTS_QUIET, "moved_cash_outs": False}
    landed = validated(ledger, moved_id)
    assert landed.eligible and landed.event_time == dispensed and landed.business_day == D2
    # Not allocated again: one live allocation, on the event time it was allocated with.
    assert live_allocations(ledger)[moved_id] == [moved_id]
    assert [e.source_id for e in events(ledger) if e.cash_out_id == moved_id] == [moved_id]
    assert _event(ledger, moved_id) == allocation
    assert [x for x in lines(ledger) if x.source_id == moved_id] == allocated_lines
    (report,) = _open(ledger, "moved")
    assert moved_id in report.detail and report.business_day == D1
    assert set(_by_day(ledger)[D2]) == {*_eligible(D2), f"fixed:{D2}"}

    # Later runs succeed; the move is reported once.
    export.add_sample(sample_day_ids(D3))
    assert _ok(pipeline.run(D3))["moved_cash_outs"] is False
    assert len(_open(ledger, "moved")) == 1
    assert live_allocations(ledger)[moved_id] == [moved_id]
    # Acknowledged, it does not re-open on a run over both days (replayed, nothing written).
    al.acknowledge_issue(ledger.engine(), report.issue_id, note="dispense logged late",
                         now=datetime.now(UTC))  # fmt: skip
    before = counts(ledger)
    assert _ok(pipeline.run(D1, D3)) == ALL_REPORTS_QUIET
    assert counts(ledger) == before
    _gate_open(pipeline)


# --------------------------------------------------------------------------- 4. skipped
def test_a_fixed_run_before_the_first_sale_ever_is_skipped_and_flow_goes_on(
    pipeline: Pipeline, ledger
) -> None:  # type: ignore[no-untyped-def]
    export = pipeline.export
    # The first cash-out ever is at 14:18 local on day 1: the 09:00 fixed run has no rate.
    morning = {sample_tx(p)["id"] for p in ("6c2ea411", "66255659")}
    export.add_sample(i for i in sample_day_ids(D1) if i not in morning)
    first = pipeline.run(D1)
    assert _ok(first) == {**ALL_REPORTS_QUIET, "skipped_fixed_runs": False}
    (check,) = [e for e in first.get_asset_check_evaluations()
                if e.check_name == "skipped_fixed_runs"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    run = _event(ledger, f"fixed:{D1}")
    assert run.source_kind == "fixed_skipped" and run.business_day == D1
    assert (run.fiat_cents, run.principal_sats) == (0, 0)
    assert json.loads(run.inputs_json)["reason"]
    assert [x for x in lines(ledger) if x.source_id == run.source_id] == []
    (report,) = _open(ledger, "skipped")
    assert report.source_id == f"fixed:{D1}"
    assert set(_by_day(ledger)[D1]) == {*(set(_eligible(D1)) - morning), f"fixed:{D1}"}
    _gate_open(pipeline)  # payouts are not blocked by a skipped run

    # Day 2: its fixed run has a rate (day 1's afternoon); the skipped run is not retried.
    export.add_sample(sample_day_ids(D2))
    assert _ok(pipeline.run(D2))["skipped_fixed_runs"] is False  # still unacknowledged
    fixed = _event(ledger, f"fixed:{D2}")
    assert fixed.source_kind == "fixed" and fixed.fiat_cents == 15_000 + 50_000
    assert {x.recipient_id for x in lines(ledger) if x.source_id == fixed.source_id} == {
        "diego", "elena"
    }
    assert [e.source_id for e in events(ledger)].count(f"fixed:{D1}") == 1
    assert set(_by_day(ledger)[D2]) == {*_eligible(D2), f"fixed:{D2}"}
    assert len(_open(ledger, "skipped")) == 1
    # simulate skips the same run and allocates the same lines.
    _assert_equals_simulate(pipeline, D1, D2)
    _gate_open(pipeline)


# --------------------------------------------------------------------------- 5. duplicate id
def test_a_landed_id_arriving_twice_is_revoked_and_allocated_again_when_clean(
    pipeline: Pipeline, ledger
) -> None:  # type: ignore[no-untyped-def]
    export = pipeline.export
    x = sample_tx("13fe666d")  # 2025-06-01 17:57 local, 1050.00 GTQ
    export.add_sample(sample_day_ids(D1))
    assert _ok(pipeline.run(D1)) == ALL_REPORTS_QUIET
    allocated = net_by_cash_out(ledger)[x["id"]]
    assert allocated == (105_000, validated(ledger, x["id"]).principal_sats)

    # Day 2's export holds X twice with different content: quarantined, allocation revoked.
    export.duplicates = [dict(x, fiat="1500.00000", crypto_atoms="186900")]
    export.add_sample(sample_day_ids(D2))
    assert _ok(pipeline.run(D2)) == {**ALL_REPORTS_QUIET, "revoked_cash_outs": False}
    q = s.quarantine
    with ledger.engine().connect() as c:
        held = c.execute(sa.select(q).where(q.c.source_id == x["id"])).all()
    assert len(held) == 2 and all(r.resolved_at is None for r in held)
    landed = validated(ledger, x["id"])
    assert not landed.eligible and landed.ineligible_reason.startswith("quarantined")
    undo = _event(ledger, f"undo:{x['id']}")
    assert (undo.source_kind, undo.cash_out_id, undo.compensates_source_id) == (
        "compensation", x["id"], x["id"]
    )
    assert (undo.fiat_cents, undo.business_day) == (-105_000, D1)
    original = [r for r in lines(ledger) if r.source_id == x["id"]]
    reversal = [r for r in lines(ledger) if r.source_id == undo.source_id]
    assert [(r.line_no, r.kind, r.recipient_id, r.wallet_id, r.business_day, -r.fiat_cents,
             -r.sats, r.line_id) for r in original] == [
        (r.line_no, r.kind, r.recipient_id, r.wallet_id, r.business_day, r.fiat_cents, r.sats,
         r.compensates_line_id) for r in reversal
    ]  # fmt: skip
    assert net_by_cash_out(ledger)[x["id"]] == (0, 0)
    assert sum(r.sats for r in original + reversal) == 0  # commission too
    (report,) = _open(ledger, "revoked")
    assert report.source_id == undo.source_id and report.business_day == D1
    assert x["id"] not in live_allocations(ledger)
    assert set(_by_day(ledger)[D2]) == {*_eligible(D2), f"fixed:{D2}"}

    # Day 3's export has X once again, as before: eligible, allocated again as X~2 (late).
    export.duplicates = []
    export.add_sample(sample_day_ids(D3))
    reports = _ok(pipeline.run(D3))
    assert reports["late_events"] is False and reports["revoked_cash_outs"] is False
    with ledger.engine().connect() as c:
        held = c.execute(sa.select(q).where(q.c.source_id == x["id"])).all()
    assert all(r.resolved_at is not None for r in held)
    assert validated(ledger, x["id"]).eligible
    again = _event(ledger, f"{x['id']}~2")
    assert again.source_kind == "cash_out" and again.cash_out_id == x["id"]
    assert again.business_day == D1 and json.loads(again.inputs_json)["late"] is True
    assert live_allocations(ledger)[x["id"]] == [f"{x['id']}~2"]
    assert net_by_cash_out(ledger)[x["id"]] == (105_000, allocated[1])
    assert [r.source_id for r in _open(ledger, "late")] == [f"{x['id']}~2"]
    assert all(len(v) == 1 for v in live_allocations(ledger).values())
    _gate_open(pipeline)


def test_the_same_duplicate_recurring_after_it_was_resolved_revokes_again(
    pipeline: Pipeline, ledger
) -> None:  # type: ignore[no-untyped-def]
    export = pipeline.export
    x = sample_tx("13fe666d")
    export.add_sample(sample_day_ids(D1, D2))
    assert _ok(pipeline.run(D1)) == ALL_REPORTS_QUIET
    duplicate = dict(x, fiat="1500.00000", crypto_atoms="186900")
    export.duplicates = [duplicate]
    assert _ok(pipeline.run(D2))["revoked_cash_outs"] is False  # undo:X
    export.duplicates = []
    _ok(pipeline.run(D2))  # clean again: X~2
    assert live_allocations(ledger)[x["id"]] == [f"{x['id']}~2"]

    # Lamassu's export shows the very same two copies again.
    export.duplicates = [duplicate]
    assert _ok(pipeline.run(D2))["revoked_cash_outs"] is False
    q = s.quarantine
    with ledger.engine().connect() as c:
        held = c.execute(sa.select(q).where(q.c.source_id == x["id"])).all()
    assert [r.resolved_at for r in held] == [None, None]  # every copy quarantined (open)
    assert not validated(ledger, x["id"]).eligible
    assert x["id"] not in live_allocations(ledger)  # X~2 revoked by undo:X~2
    assert net_by_cash_out(ledger)[x["id"]] == (0, 0)


# --------------------------------------------------------------------------- 6. acknowledged
def test_acknowledged_reports_stay_closed_and_never_block_payouts(
    pipeline: Pipeline, ledger, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("DCA_LNBITS_URL", raising=False)
    export = pipeline.export
    late_id = sample_tx("dec501fd")["id"]  # 2025-06-01 17:03 local, reported late
    errored = sample_tx("99ab0c39")["id"]  # 2025-06-01 16:28 local, errored after allocation
    export.add_sample(i for i in sample_day_ids(D1) if i != late_id)
    assert _ok(pipeline.run(D1)) == ALL_REPORTS_QUIET
    assert errored in live_allocations(ledger)

    export.add_sample([late_id, *sample_day_ids(D2)])
    export.txs[errored]["error"] = "Operator cancel"
    reports = _ok(pipeline.run(D2))
    assert reports == {**ALL_REPORTS_QUIET, "late_events": False, "revoked_cash_outs": False}
    (late,) = _open(ledger, "late")
    (revoked,) = _open(ledger, "revoked")
    assert (late.source_id, late.business_day) == (late_id, D1)
    assert (revoked.source_id, revoked.business_day) == (f"undo:{errored}", D1)
    assert net_by_cash_out(ledger)[errored] == (0, 0)
    # Reports never block payouts: the gate is open and the payout job plans (dry run).
    _gate_open(pipeline)
    resources = {"ledger": ledger, "lnbits": lnbits_from_env(), "alerts": AlertsResource(),
                 "settings": SETTINGS}  # fmt: skip
    dry = {"ops": {"send_payouts": {"config": {"dry_run": True}}}}
    assert payout_job.execute_in_process(
        instance=pipeline.instance, resources=resources, run_config=dry, raise_on_error=False
    ).success

    # The operator acknowledges both (the CLI); a run over that day does not re-open them.
    for issue in (late, revoked):
        code = cli(["allocations", "acknowledge", str(issue.issue_id), "--note",
                    "checked with the operator", "--ledger-url", ledger.url])  # fmt: skip
        assert code == 0
    before = counts(ledger)
    assert _ok(pipeline.run(D1, D2)) == ALL_REPORTS_QUIET
    assert counts(ledger) == before  # replayed: no event, no line, no issue
    assert _open(ledger, "late") == [] and _open(ledger, "revoked") == []
    export.add_sample(sample_day_ids(D3))
    assert _ok(pipeline.run(D3)) == ALL_REPORTS_QUIET
    assert counts(ledger)[2] == before[2]
    assert [e.source_id for e in events(ledger)].count(f"undo:{errored}") == 1
    _gate_open(pipeline)
