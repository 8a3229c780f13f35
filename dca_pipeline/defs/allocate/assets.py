"""Allocation assets: validated cash-outs → flow / fixed allocations → commission → balances.

ONE compute step (a multi-asset) because the engine interleaves flow and fixed events in time
order: the fixed run at 09:00 lowers the balances the 09:05 cash-out splits. The step writes the
ledger itself (``allocation_events`` / ``allocation_lines``) and returns MaterializeResults with
what an operator wants to see; the ledger, not an IO manager, is the storage.

Day D depends on every earlier day (balances carry over), hence the self-dependency on the
previous partition, and a date-range backfill is ONE run (``BackfillPolicy.single_run``) that
processes its days in order. Every run first replays the stored events of its days, then
appends to the ledger's sequence what §4a says is due (compensations, late events, in-order
events); nothing already in the ledger is ever rewritten (see
:mod:`dca_pipeline.ledger.allocations`).
"""

from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg

from dca_pipeline.defs.allocate.checks import (
    ALLOCATION_CHECK_SPECS,
    BALANCES,
    COMMISSION,
    FIXED,
    FLOW,
    evaluate_money_checks,
)
from dca_pipeline.defs.settings import BusinessSettings, business_days
from dca_pipeline.domain.money import format_cents
from dca_pipeline.ledger import allocations as al
from dca_pipeline.ledger.resource import LedgerResource

VALIDATED = dg.AssetKey("validated_cash_outs")
PREVIEW_ROWS = 10
_PREVIOUS_DAY = dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)


def _self(key: dg.AssetKey) -> dg.AssetDep:
    return dg.AssetDep(key, partition_mapping=_PREVIOUS_DAY)


def allocation_specs() -> list[dg.AssetSpec]:
    """Built on demand: module-level AssetSpecs would be autoloaded as extra definitions."""
    return [
        dg.AssetSpec(
            FLOW,
            group_name="allocation",
            kinds={"sqlalchemy"},
            # Only self-dependencies (day D needs day D-1 of the same asset): cross-asset
            # previous-day edges form a cycle the UI cannot draw, and force a yield order
            # inside the step. One step computes flow and fixed together, in event order.
            deps=[VALIDATED, _self(FLOW)],
            description=(
                "Each eligible validated cash-out split among the active flow clients in "
                "proportion to their remaining balances (business-rules §4), exact integer "
                "centavos and sats, plus the unallocated remainder. "
                "Ledger: allocation_lines kind flow|unallocated."
            ),
        ),
        dg.AssetSpec(
            FIXED,
            group_name="allocation",
            kinds={"sqlalchemy"},
            deps=[VALIDATED, _self(FIXED)],
            description=(
                "The daily fixed run at the configured local time (§5): min(limit, balance, "
                "system max) per active fixed client at the day's reference rate. Ledger: "
                "allocation_lines kind fixed."
            ),
        ),
        dg.AssetSpec(
            COMMISSION,
            group_name="allocation",
            kinds={"sqlalchemy"},
            deps=[VALIDATED, FLOW],
            description=(
                "Each cash-out's commission_sats split over the commission recipients in force by "
                "largest remainder on basis points (§6). Ledger: allocation_lines kind commission."
            ),
        ),
        dg.AssetSpec(
            BALANCES,
            group_name="allocation",
            kinds={"sqlalchemy"},
            deps=[FLOW, FIXED],
            description=(
                "Remaining balance per client: confirmed deposits (and corrections) minus every "
                "flow and fixed allocation. Analysts: view analyst_client_balance_history."
            ),
        ),
    ]


def _gtq(cents: int) -> str:
    return format_cents(cents)


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> dg.MetadataValue:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows[:PREVIEW_ROWS]]
    if len(rows) > PREVIEW_ROWS:
        lines.append(f"\n… {len(rows) - PREVIEW_ROWS} more")
    if not rows:
        lines.append("| " + " | ".join("—" for _ in header) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def _kind(summary: Mapping[str, Any], kind: str) -> dict[str, Any]:
    return summary["kinds"].get(kind, {"lines": 0, "fiat_cents": 0, "sats": 0, "recipients": {}})


def _recipients_table(entry: Mapping[str, Any], fiat: bool = True) -> dg.MetadataValue:
    ranked = sorted(entry["recipients"].items(), key=lambda kv: (-kv[1][1], kv[0]))
    if fiat:
        return _table(
            ("recipient", "fiat (GTQ)", "sats"),
            [(r, _gtq(f), f"{s:,}") for r, (f, s) in ranked],
        )
    return _table(("recipient", "sats"), [(r, f"{s:,}") for r, (_, s) in ranked])


def _results(
    first: date,
    last: date,
    outcome: al.RangeOutcome,
    summary: Mapping[str, Any],
    balances: list[tuple[str, int, int, int]],
) -> Iterator[dg.MaterializeResult]:
    common = {
        "days": dg.MetadataValue.text(f"{first} … {last}" if first != last else str(first)),
        "events_written": outcome.events_written,
        "events_verified": outcome.events_verified,
        "lines_written": outcome.lines_written,
        "cash_outs_pending_settlement": outcome.pending,
        "issues_found": len(outcome.issues),
        "late_events": len(outcome.reported("late")),
        "compensations": len(outcome.reported("revoked")) + len(outcome.reported("changed")),
        "fixed_runs_skipped": len(outcome.reported("skipped")),
    }
    flow, unallocated = _kind(summary, "flow"), _kind(summary, "unallocated")
    yield dg.MaterializeResult(
        asset_key=FLOW,
        metadata=common
        | {
            "cash_outs": summary["cash_outs"],
            "flow_lines": flow["lines"],
            "flow_fiat_gtq": dg.MetadataValue.text(_gtq(flow["fiat_cents"])),
            "flow_fiat_cents": flow["fiat_cents"],
            "flow_sats": flow["sats"],
            "clients_paid": len(flow["recipients"]),
            "unallocated_fiat_gtq": dg.MetadataValue.text(_gtq(unallocated["fiat_cents"])),
            "unallocated_fiat_cents": unallocated["fiat_cents"],
            "unallocated_sats": unallocated["sats"],
            "preview": _recipients_table(flow),
        },
    )
    fixed = _kind(summary, "fixed")
    runs = [
        (
            day,
            inputs.get("clients", 0),
            inputs.get("rate_sats_per_cent", "—"),
            inputs.get("rate_source", "—"),
        )
        for day, inputs in summary["fixed_runs"]
    ]
    yield dg.MaterializeResult(
        asset_key=FIXED,
        metadata=common
        | {
            "fixed_runs": len(runs),
            "fixed_lines": fixed["lines"],
            "fixed_fiat_gtq": dg.MetadataValue.text(_gtq(fixed["fiat_cents"])),
            "fixed_fiat_cents": fixed["fiat_cents"],
            "fixed_sats": fixed["sats"],
            "clients_paid": len(fixed["recipients"]),
            "preview": _recipients_table(fixed),
            "runs": _table(("day", "clients", "rate (sats/centavo)", "rate source"), runs),
        },
    )
    commission = _kind(summary, "commission")
    yield dg.MaterializeResult(
        asset_key=COMMISSION,
        metadata=common
        | {
            "commission_lines": commission["lines"],
            "commission_sats": commission["sats"],
            "recipients_paid": len(commission["recipients"]),
            "preview": _recipients_table(commission, fiat=False),
        },
    )
    ranked = sorted(balances, key=lambda b: (-b[3], b[0]))
    yield dg.MaterializeResult(
        asset_key=BALANCES,
        metadata={
            "days": common["days"],
            "clients": len(balances),
            "remaining_gtq": dg.MetadataValue.text(_gtq(sum(b[3] for b in balances))),
            "remaining_cents": sum(b[3] for b in balances),
            "clients_with_balance": sum(1 for b in balances if b[3] > 0),
            "negative_balances": sum(1 for b in balances if b[3] < 0),
            "preview": _table(
                ("client", "deposited (GTQ)", "allocated (GTQ)", "remaining (GTQ)"),
                [(cid, _gtq(d), _gtq(a), _gtq(r)) for cid, d, a, r in ranked],
            ),
        },
    )


@dg.multi_asset(
    name="allocations",
    specs=allocation_specs(),
    check_specs=list(ALLOCATION_CHECK_SPECS),
    partitions_def=business_days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=False,
    op_tags={"dca/allocation": "1"},
    description="Allocate validated cash-outs day by day in order (one engine, one step).",
)
def allocations(
    context: dg.AssetExecutionContext, ledger: LedgerResource, settings: BusinessSettings
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    key_range = context.partition_key_range
    first, last = date.fromisoformat(key_range.start), date.fromisoformat(key_range.end)
    engine = ledger.engine()
    now = datetime.now(UTC)
    try:
        outcome = al.allocate_range(
            engine,
            settings.rules(),
            first,
            last,
            now=now,
            settle_minutes=settings.settle_minutes,
            run_id=context.run.run_id,
            start_day=business_days.start.date(),
            only_landed=True,
        )
    except al.AllocationRefused as refused:
        raise dg.Failure(description=str(refused)) from None
    context.log.info(
        f"{first}…{last}: {outcome.events_written} event(s) written "
        f"({outcome.lines_written} lines), {outcome.events_verified} verified, "
        f"{outcome.pending} cash-out(s) waiting to settle, {len(outcome.issues)} issue(s)"
    )
    for issue in outcome.issues:
        context.log.warning(f"{issue.kind} {issue.source_id}: {issue.detail.splitlines()[0]}")
    with engine.connect() as c:
        summary = al.range_summary(c, first, last)
        balances = al.client_balances(c)
    yield from _results(first, last, outcome, summary, balances)
    yield from evaluate_money_checks(
        engine, first, last, outcome, now=now, run_id=context.run.run_id, balances=balances
    )
