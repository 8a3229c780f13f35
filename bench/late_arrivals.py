"""Late and revoked cash-outs (§4a): a live replay ticked every 6 h, against the same data in order.

    .venv/bin/python -m bench.late_arrivals [--days 90] [--per-day 50] [--clients 100]
        [--late 0.10] [--revoked 0.03] [--ledger sqlite|postgres|both] [--seed 11]
        [--profile 0]

One dataset, two timelines, each on a fresh ledger, in the same process:

- **(a) in order**: every cash-out becomes visible (its validated row is inserted) at its event
  time, already in its final form (a revoked one lands ineligible and is never allocated);
- **(b) late/revoked**: ``--late`` of the cash-outs (10 %) become visible 6–30 h after their
  event time; ``--revoked`` of them (3 %, drawn independently of the late ones) are revoked
  6–24 h after they became visible (``error`` set, ``eligible`` false, as validation marks a
  failed dispense); all the others as in (a).

Both end with the same validated rows. Every 6 h of simulated time (from the first day's local
midnight until every late arrival and revocation has happened, + 12 h) each ledger gets what has
arrived since the previous tick (cash-outs, revocations, deposits confirmed meanwhile), and then
one live run: :func:`dca_pipeline.ledger.allocations.live_range` and
:func:`~dca_pipeline.ledger.allocations.allocate_range` on that range (``now`` = the tick,
``settle_minutes`` = 15, ``start_day`` = the first day). Only that run is timed (the data
arriving is not). The two ledgers are ticked alternately, tick by tick, so machine noise hits
both alike. Reported per timeline: per-tick time (median, p95, total); the ratio (b)/(a) of
median and total (goal ≤ 1.5×); late events and compensations appended. At the end (asserted, so
the bench fails loudly when wrong): every tick reproduced its replay; (b)'s ledger — and (a)'s —
nets every non-revoked cash-out to its fiat, principal and commission and every revoked one to
zero; every event's lines add up (the money checks `check_lines_sum` flow/fixed/commission and
`check_no_negative_balance`); a replay of the whole period reproduces both ledgers.

Data (bench-local seeding written straight into the ledger tables with the helpers of
``dca_pipeline_tests/allocate/seeding.py``, as ``bench.allocation`` does; validated rows are
seeded directly, no Lamassu export is landed, so no fetch window bounds what is due):
``--clients`` clients (80 % flow, 20 % fixed with daily limits of 50 or 200 GTQ), a 70/30
commission split, an initial deposit per client and top-ups every 5–25 days (confirmed at their
time, log-uniform amounts, so balances run low now and then), ``--per-day`` cash-outs a day
(85 % between 07:00 and 21:00 local, fiat 5–2 000 GTQ, commission 3 / 4.5 / 5.5 %, a 10 %
discount now and then), and one cash-out on the eve of the first day for its fixed run's rate.

``--ledger both`` (default) runs the pair on SQLite (a file in a temp dir) and then on
PostgreSQL (a throwaway database created and dropped on ``DCA_TEST_PG_DSN``, default
postgresql://postgres@127.0.0.1:5432/postgres). ``--profile N`` runs cProfile around every
tick of both timelines (the timings then include the profiler's overhead, alike on both sides)
and prints the top N functions of each by cumulative and by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import pstats
import random
import statistics
import time
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from bench.allocation import fresh_ledger
from dca_pipeline.domain.cash_out import HAS_ERROR
from dca_pipeline.domain.rules import BusinessRules
from dca_pipeline.ledger import allocations as al
from dca_pipeline.ledger import schema as s
from dca_pipeline.ledger.allocation_store import load_inputs
from dca_pipeline.ledger.database import LedgerResource
from dca_pipeline_tests.allocate.seeding import add_client, cash_out_row, commission, deposit

RULES = BusinessRules()
DAY0 = date(2025, 1, 1)
SINCE = datetime(2024, 12, 1, tzinfo=UTC)
TICK = timedelta(hours=6)
SETTLE_MINUTES = 15
REVOKED_ERROR = "Lamassu: dispense failed"
GOAL = 1.5


# --------------------------------------------------------------------------- the dataset
@dataclass(frozen=True)
class CashOutPlan:
    row: dict  # the validated row in its eligible form (cash_out_row)
    event_time: datetime
    late: bool
    #: (b): when the row becomes visible; (a): always its event time.
    visible_b: datetime
    #: (b): when it is revoked (None: never); (a) lands it revoked from the start.
    revoke_at: datetime | None


@dataclass
class Dataset:
    first_day: date
    last_day: date
    clients: list[tuple[str, str, int | None]]  # (client_id, mode, daily limit)
    deposits: list[tuple[str, str, int, datetime]]  # (deposit_id, client, cents, confirmed_at)
    eve: dict  # the cash-out before the start day (feeds the first fixed run's rate)
    cash_outs: list[CashOutPlan] = field(default_factory=list)

    @property
    def revoked_ids(self) -> set[str]:
        return {x.row["id"] for x in self.cash_outs if x.revoke_at is not None}


def _log_uniform(rng: random.Random, low: int, high: int) -> int:
    return int(math.exp(rng.uniform(math.log(low), math.log(high))))


def build_dataset(
    days: int, per_day: int, n_clients: int, late: float, revoked: float, seed: int
) -> Dataset:
    rng = random.Random(seed)
    first, last = DAY0, DAY0 + timedelta(days=days - 1)
    start, end = RULES.day_start_utc(first), RULES.day_start_utc(last + timedelta(days=1))
    flow = n_clients * 4 // 5
    clients: list[tuple[str, str, int | None]] = [(f"flow-{i:04d}", "flow", None)
                                                  for i in range(flow)]
    clients += [(f"fixed-{i:04d}", "fixed", rng.choice([5_000, 20_000]))
                for i in range(n_clients - flow)]
    deposits = []
    for client_id, mode, _ in clients:
        low, high = (100_000, 5_000_000) if mode == "flow" else (200_000, 2_000_000)
        deposits.append((f"d-{client_id}-0", client_id, _log_uniform(rng, low, high), SINCE))
        at, k = start, 1
        while True:
            at += timedelta(days=rng.uniform(5, 25))
            if at >= end:
                break
            amount = _log_uniform(rng, 50_000, 3_000_000) if mode == "flow" else \
                _log_uniform(rng, 50_000, 500_000)
            deposits.append((f"d-{client_id}-{k}", client_id, amount, at))
            k += 1
    eve = cash_out_row("tx-eve", start - timedelta(hours=3), 100_000, 13_000_000)
    data = Dataset(first, last, clients, deposits, eve)
    for d in range(days):
        day_start = RULES.day_start_utc(first + timedelta(days=d))
        for k in range(per_day):
            if rng.random() < 0.85:
                offset = rng.randint(7 * 3600, 21 * 3600 - 1)
            else:
                offset = rng.randint(0, 86_399)
            at = day_start + timedelta(seconds=offset, microseconds=k)
            fiat = rng.randint(1, 400) * 500
            row = cash_out_row(
                f"tx-{d:03d}-{k:04d}", at, fiat, fiat * rng.randint(120, 140),
                commission_percentage=rng.choice(["0.03", "0.045", "0.055"]),
                discount=rng.choice([None] * 9 + [10]),
            )
            is_late = rng.random() < late
            visible = at + timedelta(seconds=rng.randint(6 * 3600, 30 * 3600)) if is_late else at
            revoke_at = (visible + timedelta(seconds=rng.randint(6 * 3600, 24 * 3600))
                         if rng.random() < revoked else None)
            data.cash_outs.append(CashOutPlan(row, at, is_late, visible, revoke_at))
    return data


def _revoked_values() -> dict:
    return dict(error=REVOKED_ERROR, eligible=False, ineligible_reason=HAS_ERROR)


# --------------------------------------------------------------------------- one timeline
class Timeline:
    """One ledger and what arrives in it, tick by tick."""

    def __init__(self, name: str, ledger: LedgerResource, data: Dataset, in_order: bool):
        self.name, self.ledger, self.in_order = name, ledger, in_order
        self.engine = ledger.engine()
        # (instant, kind, payload), sorted by instant; applied up to each tick.
        arrivals: list[tuple[datetime, int, object]] = []
        for dep in data.deposits[len(data.clients):]:  # top-ups arrive when confirmed
            arrivals.append((dep[3], 0, dep))
        for x in data.cash_outs:
            if in_order:
                row = x.row if x.revoke_at is None else {**x.row, **_revoked_values()}
                arrivals.append((x.event_time, 1, {**row, "validated_at": x.event_time}))
            else:
                arrivals.append((x.visible_b, 1, {**x.row, "validated_at": x.visible_b}))
                if x.revoke_at is not None:
                    arrivals.append((x.revoke_at, 2, (x.row["id"], x.revoke_at)))
        arrivals.sort(key=lambda a: (a[0], a[1]))
        self.arrivals = arrivals
        self.instants = [a[0] for a in arrivals]
        self.applied = 0
        self.times: list[float] = []
        self.late_reports = 0
        self.revoked_reports = 0
        self.events_written = 0
        self.lines_written = 0
        self.skipped_ticks = 0
        self.profile = cProfile.Profile()
        with self.engine.begin() as c:
            commission(c, {"operator": 7000, "partner": 3000}, SINCE)
            for client_id, mode, limit in data.clients:
                add_client(c, client_id, mode=mode, daily_limit_cents=limit, effective_at=SINCE)
            for dep in data.deposits[: len(data.clients)]:
                deposit(c, *dep)
            c.execute(s.validated_cash_outs.insert(), [data.eve])

    @property
    def last_arrival(self) -> datetime:
        return self.instants[-1]

    def arrive_until(self, tick: datetime) -> None:
        upto = bisect_right(self.instants, tick)
        batch = self.arrivals[self.applied : upto]
        self.applied = upto
        if not batch:
            return
        v = s.validated_cash_outs
        with self.engine.begin() as c:
            for _, kind, payload in batch:  # in arrival order (a revocation after its row)
                if kind == 0:
                    deposit(c, *payload)  # type: ignore[misc]
                elif kind == 1:
                    c.execute(v.insert().values(**payload))  # type: ignore[arg-type]
                else:
                    cash_out_id, at = payload  # type: ignore[misc]
                    c.execute(v.update().where(v.c.id == cash_out_id)
                              .values(**_revoked_values(), validated_at=at))

    def tick(self, now: datetime, start_day: date, profile: bool) -> None:
        if profile:
            self.profile.enable()
        t = time.perf_counter()
        span = al.live_range(self.engine, RULES, now=now, start_day=start_day)
        out = None
        if span is not None:
            out = al.allocate_range(self.engine, RULES, span[0], span[1], now=now,
                                    settle_minutes=SETTLE_MINUTES, start_day=start_day)
        self.times.append(time.perf_counter() - t)
        if profile:
            self.profile.disable()
        if out is None:
            self.skipped_ticks += 1
            return
        assert out.reproduced, f"{self.name} {now}: replay differs: {out.mismatches[:3]}"
        self.late_reports += len(out.reported("late"))
        self.revoked_reports += len(out.reported("revoked"))
        self.events_written += out.events_written
        self.lines_written += out.lines_written


# --------------------------------------------------------------------------- checks
def counts(engine: sa.Engine) -> dict[str, int]:
    e = s.allocation_events
    with engine.connect() as c:
        by_kind = dict(c.execute(
            sa.select(e.c.source_kind, sa.func.count()).group_by(e.c.source_kind)).all())
        lines = c.execute(
            sa.select(sa.func.count()).select_from(s.allocation_lines)).scalar_one()
        late_issues = c.execute(
            sa.select(sa.func.count()).select_from(s.allocation_issues)
            .where(s.allocation_issues.c.kind == "late")).scalar_one()
    return {**{k: int(n) for k, n in by_kind.items()}, "lines": int(lines),
            "late_issues": int(late_issues)}


def verify_ledger(name: str, engine: sa.Engine, data: Dataset, last_day: date) -> str:
    """Assert the ledger nets every cash-out right and its money checks pass; a summary."""
    e, line = s.allocation_events, s.allocation_lines
    with engine.connect() as c:
        rows = c.execute(
            sa.select(e.c.cash_out_id, line.c.kind, sa.func.sum(line.c.fiat_cents),
                      sa.func.sum(line.c.sats))
            .select_from(line.join(e, e.c.source_id == line.c.source_id))
            .where(e.c.cash_out_id.is_not(None))
            .group_by(e.c.cash_out_id, line.c.kind)
        ).all()
        allocations = dict(c.execute(
            sa.select(e.c.cash_out_id, sa.func.count())
            .where(e.c.source_kind == "cash_out").group_by(e.c.cash_out_id)).all())
        days = al.days_between(data.first_day, last_day)
        sums = al.line_sums(c, days)
        checks = {kind: al.check_lines_sum(c, days, kind, sums)
                  for kind in ("flow", "fixed", "commission")}
        checks["no negative balance"] = al.check_no_negative_balance(c)
    net: dict[str, list[int]] = {}
    for cash_out_id, kind, fiat, sats in rows:
        entry = net.setdefault(cash_out_id, [0, 0, 0])
        if kind == "commission":
            entry[2] += int(sats)
            assert int(fiat) == 0, f"{name}: {cash_out_id} commission lines carry fiat {fiat}"
        else:
            entry[0] += int(fiat)
            entry[1] += int(sats)
    revoked = data.revoked_ids
    wrong = []
    revoked_allocated = 0
    for x in data.cash_outs:
        r = x.row
        got = tuple(net.get(r["id"], (0, 0, 0)))
        if r["id"] in revoked:
            want: tuple[int, ...] = (0, 0, 0)
            revoked_allocated += allocations.get(r["id"], 0) > 0
        else:
            want = (r["fiat_cents"], r["principal_sats"], r["commission_sats"])
        if got != want:
            wrong.append(f"{r['id']}: nets to fiat/principal/commission {got}, expected {want}")
    assert not wrong, f"{name}: {len(wrong)} cash-out(s) net wrong:\n" + "\n".join(wrong[:10])
    extra = set(net) - {x.row["id"] for x in data.cash_outs}
    assert not extra, f"{name}: lines for cash-outs outside the dataset: {sorted(extra)[:5]}"
    assert max(allocations.values(), default=1) == 1, f"{name}: a cash-out allocated twice"
    for what, outcome in checks.items():
        assert outcome.passed, f"{name}: check {what} failed: {outcome.description[:2000]}"
    inputs = None
    with engine.connect() as c:
        inputs = load_inputs(c)
    replayed, diffs = al.replay_range(engine, inputs, data.first_day, last_day)
    assert not diffs, f"{name}: replay of the whole period differs: {diffs[:5]}"
    return (f"{len(data.cash_outs) - len(revoked)} cash-outs net to their fiat, "
            f"{len(revoked)} revoked net to zero ({revoked_allocated} had been allocated), "
            f"{checks['flow'].metadata['events_checked']} events' lines add up, "
            f"replay of {replayed} events reproduces")


# --------------------------------------------------------------------------- report
def _stats(times: list[float]) -> tuple[float, float, float]:
    ordered = sorted(times)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return statistics.median(ordered), p95, sum(ordered)


def _top(profile: cProfile.Profile, n: int, sort: str) -> str:
    out = io.StringIO()
    pstats.Stats(profile, stream=out).strip_dirs().sort_stats(sort).print_stats(n)
    text = out.getvalue()
    return text[text.find("   ncalls"):] if "   ncalls" in text else text


def bench(kind: str, data: Dataset, profile: int) -> float:
    flow = sum(1 for c in data.clients if c[1] == "flow")
    n_late = sum(x.late for x in data.cash_outs)
    print(f"\n== {kind} ledger: {data.first_day}..{data.last_day}, {len(data.cash_outs)} "
          f"cash-outs ({n_late} late, {len(data.revoked_ids)} revoked), {flow} flow + "
          f"{len(data.clients) - flow} fixed clients, {len(data.deposits)} deposits")
    with fresh_ledger(kind) as ledger_a, fresh_ledger(kind) as ledger_b:
        a = Timeline("(a) in order", ledger_a, data, in_order=True)
        b = Timeline("(b) late/revoked", ledger_b, data, in_order=False)
        first = RULES.day_start_utc(data.first_day)
        stop = max(a.last_arrival, b.last_arrival) + timedelta(hours=12)
        ticks = [first + k * TICK for k in range(1, (stop - first) // TICK + 2)]
        started = time.perf_counter()
        for n, now in enumerate(ticks, 1):
            for timeline in (a, b):
                timeline.arrive_until(now)
                timeline.tick(now, data.first_day, profile > 0)
            if n % 40 == 0:
                print(f"  … tick {n}/{len(ticks)} ({now:%Y-%m-%d %H:%M}Z), "
                      f"{time.perf_counter() - started:,.0f} s", flush=True)
        last_day = RULES.business_day(ticks[-1])
        assert a.applied == len(a.arrivals) and b.applied == len(b.arrivals)
        summaries = {t.name: verify_ledger(t.name, t.engine, data, last_day) for t in (a, b)}
        count_a, count_b = counts(a.engine), counts(b.engine)
    assert count_a.get("compensation", 0) == 0 and a.late_reports == 0, "(a) was not in order"
    print(f"{len(ticks)} ticks every 6 h, {ticks[0]:%Y-%m-%d %H:%M}Z … "
          f"{ticks[-1]:%Y-%m-%d %H:%M}Z (live_range + allocate_range, timed)")
    stats = {}
    for t, cnt in ((a, count_a), (b, count_b)):
        med, p95, total = stats[t.name] = _stats(t.times)
        events = sum(v for k, v in cnt.items() if k not in ("lines", "late_issues"))
        print(f"{t.name:17s}: per tick median {med * 1000:7.1f} ms  p95 {p95 * 1000:7.1f} ms  "
              f"total {total:7.2f} s   ledger: {events} "
              f"events ({cnt.get('cash_out', 0)} cash-out, {cnt.get('fixed', 0)} fixed, "
              f"{cnt.get('fixed_skipped', 0)} skipped, {cnt.get('compensation', 0)} "
              f"compensations), {cnt['lines']} lines")
    (med_a, _, tot_a), (med_b, _, tot_b) = stats[a.name], stats[b.name]
    ratio_med, ratio_tot = med_b / med_a, tot_b / tot_a
    verdict = "OK" if max(ratio_med, ratio_tot) <= GOAL else "MISSED"
    print(f"ratio (b)/(a): median {ratio_med:.2f}×, total {ratio_tot:.2f}×  "
          f"goal ≤ {GOAL}×: {verdict}")
    print(f"(b) appended {b.late_reports} late events ({count_b['late_issues']} late issues "
          f"stored) and {count_b.get('compensation', 0)} compensations "
          f"({b.revoked_reports} revoked reports)")
    for name, summary in summaries.items():
        print(f"check {name}: {summary}: OK")
    if profile:
        for t in (b, a):
            print(f"\n-- cProfile, {t.name} ticks, top {profile} by cumulative time")
            print(_top(t.profile, profile, "cumulative"))
            print(f"-- cProfile, {t.name} ticks, top {profile} by own time")
            print(_top(t.profile, profile, "tottime"))
    return max(ratio_med, ratio_tot)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--per-day", type=int, default=50)
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--late", type=float, default=0.10, help="share of late cash-outs")
    p.add_argument("--revoked", type=float, default=0.03, help="share of revoked cash-outs")
    p.add_argument("--ledger", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="cProfile every tick and print the top N functions of each timeline")
    args = p.parse_args()
    data = build_dataset(args.days, args.per_day, args.clients, args.late, args.revoked,
                         args.seed)
    kinds = ["sqlite", "postgres"] if args.ledger == "both" else [args.ledger]
    for kind in kinds:
        bench(kind, data, args.profile)


if __name__ == "__main__":
    main()
