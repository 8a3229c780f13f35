"""The blocking money checks of the allocation assets (severity ERROR).

Every check is emitted by the allocation step itself (``check_specs`` on the multi-asset), so a
failure stops everything downstream in the same run. A failure is also kept in the ledger as an
open ``allocation_issues`` row, so ``ledger_reproduces`` keeps failing in later runs until a
recomputation no longer finds it or an operator acknowledges it: the payout stage must refuse
to pay while the LATEST evaluation of any key in :data:`MONEY_CHECK_KEYS` did not pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime

import dagster as dg
import sqlalchemy as sa

from dca_pipeline.ledger import allocations as al

FLOW = dg.AssetKey("flow_allocations")
FIXED = dg.AssetKey("fixed_allocations")
COMMISSION = dg.AssetKey("commission_splits")
BALANCES = dg.AssetKey("client_balances")
ALLOCATION_ASSET_KEYS = (FLOW, FIXED, COMMISSION, BALANCES)

REPRODUCES = "ledger_reproduces"

_CHECKS: dict[dg.AssetKey, tuple[tuple[str, str], ...]] = {
    FLOW: (
        (REPRODUCES, "Recomputing the partitions gives exactly the ledger's lines, and no "
                     "earlier difference is still open."),
        ("cash_out_lines_add_up", "Per cash-out: Σ flow + unallocated fiat == fiat_cents and "
                                  "Σ sats == principal_sats, exactly."),
        ("no_client_above_remaining_balance", "At every event no client has received more "
                                              "than its confirmed deposits by then."),
        ("allocated_cash_outs_still_eligible", "No allocated cash-out was later marked "
                                               "errored/ineligible by Lamassu (needs an "
                                               "operator decision)."),
        ("no_late_cash_outs", "No eligible cash-out appeared before the last allocated event "
                              "(it would need history to be rewritten)."),
    ),
    FIXED: (
        (REPRODUCES, "Recomputing the fixed runs gives exactly the ledger's lines."),
        ("fixed_lines_add_up", "Per fixed run: Σ lines == the run's fiat and sats totals."),
        ("no_client_above_remaining_balance", "At every event no client has received more "
                                              "than its confirmed deposits by then."),
    ),
    COMMISSION: (
        (REPRODUCES, "Recomputing the commission split gives exactly the ledger's lines."),
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

MONEY_CHECK_SPECS: tuple[dg.AssetCheckSpec, ...] = tuple(
    dg.AssetCheckSpec(name, asset=key, blocking=True, description=description)
    for key, checks in _CHECKS.items()
    for name, description in checks
)
#: Every blocking check of the allocation stage; pay nothing unless all latest evaluations passed.
MONEY_CHECK_KEYS: frozenset[dg.AssetCheckKey] = frozenset(spec.key for spec in MONEY_CHECK_SPECS)


def money_check_keys() -> frozenset[dg.AssetCheckKey]:
    return MONEY_CHECK_KEYS


def _result(key: dg.AssetKey, name: str, outcome: al.CheckOutcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR,
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
        results[(FLOW, "allocated_cash_outs_still_eligible")] = al.check_open_issues(
            c, ["revoked"], "allocated cash-out that is no longer eligible"
        )
        results[(FLOW, "no_late_cash_outs")] = al.check_open_issues(
            c, ["late"], "late cash-out"
        )
    for key in ALLOCATION_ASSET_KEYS:
        results[(key, REPRODUCES)] = reproduces
    for key, checks in _CHECKS.items():
        for name, _ in checks:
            yield _result(key, name, results[(key, name)])


def _reproduces(outcome: al.RangeOutcome, open_mismatches: Sequence[object]) -> al.CheckOutcome:
    skipped = [d.day.isoformat() for d in outcome.days if d.skipped]
    lines = [
        f"issue {r.issue_id} ({r.business_day}, {r.source_id}): {r.detail}"  # type: ignore[attr-defined]
        for r in open_mismatches
    ]
    if skipped:
        lines.append(f"not processed because an earlier day differs: {', '.join(skipped)}")
    return al.CheckOutcome(
        outcome.reproduced and not open_mismatches,
        "the ledger reproduces exactly" if not lines else "\n".join(lines[: al.MAX_DIFF_LINES]),
        {
            "events_verified": outcome.events_verified,
            "events_written": outcome.events_written,
            "open_mismatches": len(open_mismatches),
            "days_skipped": len(skipped),
        },
    )
