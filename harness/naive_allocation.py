"""A deliberately naive, obviously-correct allocation: the test oracle and the bench baseline.

It re-derives every balance from scratch with per-client ``Fraction`` arithmetic and dicts, in
the most literal reading of business-rules §4–§6. It is slow on purpose and shares no code with
:mod:`dca_pipeline.domain.engine` beyond the input types, so agreement between the two is
evidence, not tautology.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from fractions import Fraction

from dca_pipeline.domain.cash_out import CashOut
from dca_pipeline.domain.commission import CommissionVersion
from dca_pipeline.domain.engine import AllocationLine, ClientChange, Deposit
from dca_pipeline.domain.rules import BusinessRules


def naive_largest_remainder(
    total: int, weights: list[tuple[str, int]], *, last: str | None = None
) -> dict[str, int]:
    """Hamilton's method with exact Fractions; ties to the smaller key, ``last`` loses ties."""
    weight_sum = sum(w for _, w in weights)
    if weight_sum == 0:
        return {key: 0 for key, _ in weights}
    exact = {key: Fraction(total * w, weight_sum) for key, w in weights}
    shares = {key: math.floor(value) for key, value in exact.items()}
    leftover = total - sum(shares.values())
    order = sorted(
        exact,
        key=lambda k: (-(exact[k] - shares[k]), k == last, k),
    )
    for key in order[:leftover]:
        shares[key] += 1
    return shares


def naive_flow_split(
    fiat_cents: int, principal_sats: int, remaining: dict[str, int]
) -> tuple[dict[str, int], int, dict[str, int], int]:
    """§4 for one cash-out: (client fiat, unallocated fiat, client sats, unallocated sats)."""
    total = sum(remaining.values())
    if fiat_cents >= total:
        fiat = dict(remaining)
        unallocated = fiat_cents - total
    else:
        fiat = naive_largest_remainder(fiat_cents, sorted(remaining.items()))
        unallocated = 0
    marker = "\uffff-unallocated"  # sorts after every client id; also loses every tie
    sats = naive_largest_remainder(
        principal_sats, [*sorted(fiat.items()), (marker, unallocated)], last=marker
    )
    unallocated_sats = sats.pop(marker)
    return fiat, unallocated, sats, unallocated_sats


def _settings_at(changes: Sequence[ClientChange], client_id: str, t: datetime):
    current = None
    for change in sorted(changes, key=lambda c: c.effective_at):
        if change.client_id == client_id and change.effective_at <= t:
            current = change
    return current


def naive_allocate(
    *,
    cash_outs: Sequence[CashOut],
    fixed_days: Sequence[date],
    clients: Sequence[ClientChange],
    deposits: Sequence[Deposit],
    commission_versions: Sequence[CommissionVersion],
    rules: BusinessRules,
    rate_history: Sequence[CashOut] | None = None,
) -> tuple[list[AllocationLine], dict[str, int]]:
    """The whole contract, literally. Returns (lines, fiat allocated per client)."""
    lines, allocated, _ = naive_allocate_with_skips(
        cash_outs=cash_outs,
        fixed_days=fixed_days,
        clients=clients,
        deposits=deposits,
        commission_versions=commission_versions,
        rules=rules,
        rate_history=rate_history,
    )
    return lines, allocated


def naive_allocate_with_skips(
    *,
    cash_outs: Sequence[CashOut],
    fixed_days: Sequence[date],
    clients: Sequence[ClientChange],
    deposits: Sequence[Deposit],
    commission_versions: Sequence[CommissionVersion],
    rules: BusinessRules,
    rate_history: Sequence[CashOut] | None = None,
) -> tuple[list[AllocationLine], dict[str, int], list[str]]:
    """:func:`naive_allocate` plus the source ids of the fixed runs skipped for want of a
    reference rate (§5: fixed clients to pay, never an eligible cash-out before the run), in
    processing order. A skipped run writes nothing and allocates nothing."""
    history = list(cash_outs if rate_history is None else rate_history)
    events: list[tuple[datetime, int, str, CashOut | date]] = [
        (c.event_time, 0, c.id, c) for c in cash_outs
    ]
    events += [
        (rules.fixed_run_at(d), 1, f"fixed:{d.isoformat()}", d) for d in fixed_days
    ]
    events.sort(key=lambda e: e[:3])
    client_ids = sorted({c.client_id for c in clients})
    allocated = dict.fromkeys(client_ids, 0)
    lines: list[AllocationLine] = []
    skipped: list[str] = []

    def add(source: str, kind: str, who: str | None, fiat: int, sats: int) -> None:
        if fiat or sats:
            lines.append(AllocationLine(len(lines) + 1, source, kind, who, fiat, sats))  # type: ignore[arg-type]

    for t, _, source_id, payload in events:
        remaining = {
            cid: sum(
                d.amount_cents
                for d in deposits
                if d.client_id == cid and d.confirmed_at <= t
            )
            - allocated[cid]
            for cid in client_ids
        }
        if isinstance(payload, CashOut):
            flow = {}
            for cid in client_ids:
                s = _settings_at(clients, cid, t)
                if (
                    s
                    and s.mode == "flow"
                    and s.status == "active"
                    and remaining[cid] > 0
                ):
                    flow[cid] = remaining[cid]
            fiat, un_fiat, sats, un_sats = naive_flow_split(
                payload.fiat_cents, payload.principal_sats, flow
            )
            for cid in sorted(fiat):
                add(source_id, "flow", cid, fiat[cid], sats[cid])
                allocated[cid] += fiat[cid]
            add(source_id, "unallocated", None, un_fiat, un_sats)
            in_force = [v for v in commission_versions if v.effective_at <= t]
            if in_force:
                version = max(in_force, key=lambda v: v.effective_at)
                split = naive_largest_remainder(
                    payload.commission_sats,
                    sorted(
                        (r.recipient_id, r.basis_points) for r in version.recipients
                    ),
                )
                for rid in sorted(split):
                    add(source_id, "commission", rid, 0, split[rid])
        else:
            fixed = []
            for cid in client_ids:
                s = _settings_at(clients, cid, t)
                if (
                    s
                    and s.mode == "fixed"
                    and s.status == "active"
                    and remaining[cid] > 0
                ):
                    fixed.append(
                        (
                            cid,
                            min(
                                s.daily_limit_cents or 0,
                                remaining[cid],
                                rules.max_daily_cents,
                            ),
                        )
                    )
            if not fixed:
                continue
            window = [c for c in history if t - timedelta(hours=24) <= c.event_time < t]
            if window:
                rate = Fraction(
                    sum(c.principal_sats for c in window),
                    sum(c.fiat_cents for c in window),
                )
            else:
                earlier = [c for c in history if c.event_time < t]
                if not earlier:
                    skipped.append(source_id)  # §5: no lines, nobody's balance moves
                    continue
                latest = max(earlier, key=lambda c: (c.event_time, c.id))
                rate = Fraction(latest.principal_sats, latest.fiat_cents)
            for cid, fiat_i in fixed:
                add(source_id, "fixed", cid, fiat_i, math.floor(fiat_i * rate))
                allocated[cid] += fiat_i
    return lines, allocated, skipped
