"""The allocation checks: blocking money checks (severity ERROR) and §4a reports (WARN).

Every check is emitted by the allocation step itself (``check_specs`` on the multi-asset), so a
failure stops everything downstream in the same run. A failure is also kept in the ledger as an
open ``allocation_issues`` row, so ``ledger_reproduces`` keeps failing in later runs until a
recomputation no longer finds it or an operator acknowledges it: the payout stage must refuse
to pay while the LATEST evaluation of any key in :data:`MONEY_CHECK_KEYS` did not pass.
The report checks (:data:`REPORT_CHECKS`: late, revoked, changed, moved, skipped) are WARN and
not blocking: they show what §4a handled, and never stop allocation or payouts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime

import dagster as dg
import sqlalchemy as sa

from dca_pipeline.ledger import allocations as al
from dca_pipeline.ledger.resource import LedgerResource

FLOW = dg.AssetKey("flow_allocations")
FIXED = dg.AssetKey("fixed_allocations")
COMMISSION = dg.AssetKey("commission_splits")
BALANCES = dg.AssetKey("client_balances")
ALLOCATION_ASSET_KEYS = (FLOW, FIXED, COMMISSION, BALANCES)

REPRODUCES = "ledger_reproduces"

_CHECKS: dict[dg.AssetKey, tuple[tuple[str, str], ...]] = {
    FLOW: (
        (REPRODUCES, "Replaying the stored sequence (every event recomputed from its stored "
                     "inputs and the state before it) gives exactly the ledger's lines, and no "
                     "earlier difference is still open."),
        ("cash_out_lines_add_up", "Per cash-out event (and compensation): Σ flow + unallocated "
                                  "fiat == its fiat and Σ sats == its principal, exactly."),
        ("no_client_above_remaining_balance", "In sequence order no client has received more "
                                              "than its confirmed deposits as of each event."),
    ),
    FIXED: (
        (REPRODUCES, "Replaying the fixed runs (at their stored rates) gives the ledger's lines."),
        ("fixed_lines_add_up", "Per fixed run: Σ lines == the run's fiat and sats totals."),
        ("no_client_above_remaining_balance", "In sequence order no client has received more "
                                              "than its confirmed deposits as of each event."),
    ),
    COMMISSION: (
        (REPRODUCES, "Replaying the commission split gives exactly the ledger's lines."),
        ("commission_lines_add_up", "Per cash-out: Σ commission lines == commission_sats "
                                    "(none when no commission configuration was in force)."),
        ("commission_basis_points_sum_10000", "Every commission version sums to exactly "
                                              "10 000 basis points."),
    ),
    BALANCES: (
        (REPRODUCES, "The balances come from a ledger that reproduces."),
        ("no_negative_balance", "No client's confirmed deposits minus allocations is negative."),
    ),
}

#: Expected business (§4a), reported and alerted once, never a reason to stop: severity WARN,
#: not blocking. Each lists the reports nobody has acknowledged yet.
REPORT_CHECKS: tuple[tuple[dg.AssetKey, str, str, str], ...] = (
    (FLOW, "late_events", "late", "Cash-outs (or fixed runs) that arrived after a later event "
     "was allocated: appended, computed as of the latest allocated instant."),
    (FLOW, "revoked_cash_outs", "revoked", "Allocated cash-outs that are no longer eligible "
     "(error set, dispense cleared, quarantined …): reversed by a compensating event."),
    (FLOW, "changed_cash_outs", "changed", "Allocated cash-outs whose amounts or commission "
     "changed: reversed and allocated again."),
    (FLOW, "moved_cash_outs", "moved", "Allocated cash-outs whose event time moved later (a "
     "dispense action that arrived after the row): the allocation stands."),
    (FIXED, "skipped_fixed_runs", "skipped", "Fixed runs with no reference rate (§5): skipped, "
     "fixed clients got nothing that day; everything else went on."),
)

MONEY_CHECK_SPECS: tuple[dg.AssetCheckSpec, ...] = tuple(
    dg.AssetCheckSpec(name, asset=key, blocking=True, description=description)
    for key, checks in _CHECKS.items()
    for name, description in checks
)
REPORT_CHECK_SPECS: tuple[dg.AssetCheckSpec, ...] = tuple(
    dg.AssetCheckSpec(name, asset=key, blocking=False, description=description)
    for key, name, _, description in REPORT_CHECKS
)
ALLOCATION_CHECK_SPECS = MONEY_CHECK_SPECS + REPORT_CHECK_SPECS
#: Every blocking check of the allocation stage; pay nothing unless all latest evaluations passed.
MONEY_CHECK_KEYS: frozenset[dg.AssetCheckKey] = frozenset(spec.key for spec in MONEY_CHECK_SPECS)


def money_check_keys() -> frozenset[dg.AssetCheckKey]:
    return MONEY_CHECK_KEYS


def _result(
    key: dg.AssetKey, name: str, outcome: al.CheckOutcome,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=name,
        passed=outcome.passed,
        severity=severity,
        description=outcome.description[:4000],
        metadata=outcome.metadata,
    )


def evaluate_money_checks(
    engine: sa.Engine,
    first: date,
    last: date,
    outcome: al.RangeOutcome,
    *,
    now: datetime,
    run_id: str | None,
    balances: list[tuple[str, int, int, int]] | None = None,
) -> Iterator[dg.AssetCheckResult]:
    """Evaluate every money check over [first, last]; keep failures as open issues."""
    days = al.days_between(first, last)
    with engine.connect() as c:
        sums = al.line_sums(c, days)
        results: dict[tuple[dg.AssetKey, str], al.CheckOutcome] = {
            (FLOW, "cash_out_lines_add_up"): al.check_lines_sum(c, days, "flow", sums),
            (FIXED, "fixed_lines_add_up"): al.check_lines_sum(c, days, "fixed", sums),
            (COMMISSION, "commission_lines_add_up"): al.check_lines_sum(
                c, days, "commission", sums
            ),
            (COMMISSION, "commission_basis_points_sum_10000"):
                al.check_commission_basis_points(c),
            (BALANCES, "no_negative_balance"): al.check_no_negative_balance(c, balances),
        }
        above = al.check_no_client_above_remaining(c, days)
        results[(FLOW, "no_client_above_remaining_balance")] = above
        results[(FIXED, "no_client_above_remaining_balance")] = above
    failures = [
        al.Issue(f"check:{key.to_user_string()}.{name}", "mismatch", first, result.description)
        for (key, name), result in results.items()
        if not result.passed
    ]
    if failures:
        al.record_issues(engine, failures, now, run_id)
    with engine.connect() as c:
        reproduces = _reproduces(outcome, al.open_issues(c, ["mismatch"]))
        reports = {kind: al.check_open_reports(c, kind) for _, _, kind, _ in REPORT_CHECKS}
    for key in ALLOCATION_ASSET_KEYS:
        results[(key, REPRODUCES)] = reproduces
    for key, checks in _CHECKS.items():
        for name, _ in checks:
            yield _result(key, name, results[(key, name)])
    for key, name, kind, _ in REPORT_CHECKS:
        yield _result(key, name, reports[kind], dg.AssetCheckSeverity.WARN)


def _reproduces(outcome: al.RangeOutcome, open_mismatches: Sequence[object]) -> al.CheckOutcome:
    lines = [
        f"issue {r.issue_id} ({r.business_day}, {r.source_id}): {r.detail}"  # type: ignore[attr-defined]
        for r in open_mismatches
    ]
    if outcome.mismatches and not lines:
        lines = outcome.mismatches[: al.MAX_DIFF_LINES]
    return al.CheckOutcome(
        outcome.reproduced and not open_mismatches,
        "the ledger reproduces exactly" if not lines else "\n".join(lines[: al.MAX_DIFF_LINES]),
        {
            "events_verified": outcome.events_verified,
            "events_written": outcome.events_written,
            "open_mismatches": len(open_mismatches),
            "differences": len(outcome.mismatches),
        },
    )


@dg.asset_check(
    asset=BALANCES,
    name="running_totals_match_lines",
    description=(
        "Off the hot path: the running per-client totals that live ticks read equal every "
        "allocation line re-added. Run it on demand or from a schedule; a failure alerts."
    ),
)
def running_totals_match_lines(ledger: LedgerResource) -> dg.AssetCheckResult:
    with ledger.engine().connect() as c:
        outcome = al.check_running_totals(c)
    return dg.AssetCheckResult(
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=outcome.description[:4000],
        metadata=outcome.metadata,
    )
