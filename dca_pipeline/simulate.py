"""The offline simulation / audit command (business-rules §10).

Admins preview "what would happen" and auditors recompute a period from plain exports, without
the ledger, Dagster or LNbits. It runs exactly the pipeline's code: Lamassu rows through
:mod:`dca_pipeline.lamassu` (the same parsing, validation and quarantine) and allocations
through :func:`dca_pipeline.domain.engine.allocate` (the one engine).

Admin files (clients, deposits, commission) are refused as a whole on any bad row: a silently
skipped deposit or recipient would change everybody's allocation.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from dca_pipeline.domain.commission import (
    CommissionConfigError,
    CommissionRecipient,
    CommissionVersion,
)
from dca_pipeline.domain.engine import (
    AllocationResult,
    ClientChange,
    Deposit,
    EngineError,
    allocate,
)
from dca_pipeline.domain.money import (
    MoneyParseError,
    format_cents,
    parse_cents,
    parse_integer,
)
from dca_pipeline.domain.rules import BusinessRules
from dca_pipeline.lamassu.csv_io import ExportRefused, read_export
from dca_pipeline.lamassu.validation import (
    eligible_cash_outs,
    parse_timestamp,
    validate_cash_outs,
)

#: Settings in clients.csv and the commission file carry no history: they hold from the start.
SINCE_ALWAYS = datetime(1970, 1, 1, tzinfo=UTC)


class InputRefused(ValueError):
    """An input file refused as a whole; the message is one line."""


@dataclass(frozen=True)
class SimulationInputs:
    cash_outs: Path
    clients: Path
    deposits: Path
    first_day: date
    last_day: date
    cash_out_actions: Path | None = None
    commission: Path | None = None


@dataclass(frozen=True)
class SimulationOutcome:
    lines_written: int
    clients: int
    quarantined: int
    cash_outs_allocated: int
    fixed_runs_skipped: int = 0


def _read_table(path: Path, required: Sequence[str]) -> list[dict[str, str | None]]:
    """A small admin CSV → rows of stripped text (None for empty); refuse missing columns."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputRefused(f"{path.name}: cannot read: {exc}") from exc
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in required if c not in header]
    if missing:
        raise InputRefused(f"{path.name}: missing required column(s): {', '.join(missing)}")
    rows = []
    for row in reader:
        if None in row:  # more fields than the header has
            raise InputRefused(f"{path.name}: line {reader.line_num}: more fields than the header")
        rows.append({k: (v.strip() or None) if v is not None else None for k, v in row.items()})
    return rows


def _field(path: Path, line: int, row: dict[str, str | None], name: str) -> str:
    value = row.get(name)
    if value is None:
        raise InputRefused(f"{path.name}: row {line}: {name} is empty")
    return value


def _parse_with(path: Path, line: int, what: str, parse: Callable[[str], object], text: str):
    try:
        return parse(text)
    except (MoneyParseError, ValueError) as exc:
        raise InputRefused(f"{path.name}: row {line}: bad {what} {text!r}") from exc


def load_clients(path: Path, rules: BusinessRules) -> list[ClientChange]:
    rows = _read_table(path, ("client_id", "mode", "status", "daily_limit", "wallet_id"))
    changes: list[ClientChange] = []
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        client_id = _field(path, line, row, "client_id")
        if client_id in seen:
            raise InputRefused(f"{path.name}: row {line}: client_id {client_id!r} appears twice")
        seen.add(client_id)
        _field(path, line, row, "wallet_id")
        mode = _field(path, line, row, "mode")
        status = _field(path, line, row, "status")
        if mode not in ("flow", "fixed"):
            raise InputRefused(f"{path.name}: row {line}: mode must be flow or fixed, not {mode!r}")
        if status not in ("active", "paused"):
            raise InputRefused(
                f"{path.name}: row {line}: status must be active or paused, not {status!r}"
            )
        limit = None
        if row.get("daily_limit") is not None:
            limit = _parse_with(path, line, "daily_limit", parse_cents, row["daily_limit"] or "")
            if limit <= 0:
                raise InputRefused(f"{path.name}: row {line}: daily_limit must be positive")
            if limit > rules.max_daily_cents:
                raise InputRefused(
                    f"{path.name}: row {line}: daily_limit above the system maximum "
                    f"({format_cents(rules.max_daily_cents)})"
                )
        if mode == "fixed" and limit is None:
            raise InputRefused(f"{path.name}: row {line}: a fixed client needs a daily_limit")
        changes.append(ClientChange(client_id, SINCE_ALWAYS, mode, status, limit))  # type: ignore[arg-type]
    return changes


def load_deposits(path: Path, client_ids: Iterable[str]) -> list[Deposit]:
    rows = _read_table(path, ("deposit_id", "client_id", "amount", "status", "confirmed_at"))
    known = set(client_ids)
    deposits: list[Deposit] = []
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        deposit_id = _field(path, line, row, "deposit_id")
        if deposit_id in seen:
            raise InputRefused(f"{path.name}: row {line}: deposit_id {deposit_id!r} appears twice")
        seen.add(deposit_id)
        client_id = _field(path, line, row, "client_id")
        if client_id not in known:
            raise InputRefused(f"{path.name}: row {line}: unknown client_id {client_id!r}")
        amount = _parse_with(path, line, "amount", parse_cents, _field(path, line, row, "amount"))
        if amount <= 0:
            raise InputRefused(f"{path.name}: row {line}: amount must be positive")
        status = _field(path, line, row, "status")
        if status == "pending":
            continue  # only confirmed deposits count (§4)
        if status != "confirmed":
            raise InputRefused(
                f"{path.name}: row {line}: status must be pending or confirmed, not {status!r}"
            )
        confirmed_at = _parse_with(
            path,
            line,
            "confirmed_at",
            parse_timestamp,
            _field(path, line, row, "confirmed_at"),
        )
        deposits.append(Deposit(deposit_id, client_id, amount, confirmed_at))
    return deposits


def load_commission(path: Path) -> list[CommissionVersion]:
    rows = _read_table(path, ("recipient_id", "wallet_id", "basis_points"))
    recipients = []
    for line, row in enumerate(rows, start=2):
        bp = _parse_with(
            path,
            line,
            "basis_points",
            parse_integer,
            _field(path, line, row, "basis_points"),
        )
        recipients.append(
            CommissionRecipient(
                _field(path, line, row, "recipient_id"),
                _field(path, line, row, "wallet_id"),
                bp,
            )
        )
    try:
        return [CommissionVersion(SINCE_ALWAYS, tuple(recipients))]
    except CommissionConfigError as exc:
        raise InputRefused(f"{path.name}: {exc}") from exc


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def run_simulation(
    inputs: SimulationInputs, rules: BusinessRules, *, now: datetime | None = None
) -> tuple[AllocationResult, list[Deposit], list[tuple[str, str]], int]:
    """Validate and allocate; returns (result, deposits, quarantine rows, cash-outs allocated)."""
    if inputs.first_day > inputs.last_day:
        raise InputRefused("--from is after --to")
    now = now or datetime.now(UTC)
    raw = read_export(inputs.cash_outs, "cash_out_txs")
    actions = (
        read_export(inputs.cash_out_actions, "cash_out_actions")
        if inputs.cash_out_actions
        else None
    )
    validation = validate_cash_outs(raw, actions, rules=rules, now=now)
    clients = load_clients(inputs.clients, rules)
    deposits = load_deposits(inputs.deposits, (c.client_id for c in clients))
    versions = load_commission(inputs.commission) if inputs.commission else []

    every_eligible = eligible_cash_outs(validation.valid)
    in_period = [
        c
        for c in every_eligible
        if inputs.first_day <= rules.business_day(c.event_time) <= inputs.last_day
    ]
    result = allocate(
        cash_outs=in_period,
        fixed_days=_days(inputs.first_day, inputs.last_day),
        clients=clients,
        deposits=deposits,
        commission_versions=versions,
        rules=rules,
        rate_history=every_eligible,
    )
    quarantine = sorted(
        zip(
            validation.quarantine["source_id"].astype(str).tolist(),
            validation.quarantine["reason"].astype(str).tolist(),
            strict=True,
        )
    )
    return result, deposits, quarantine, len(in_period)


def _write_csv_atomically(
    path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]
) -> None:
    # Write beside the target and rename, so a reader never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_outputs(
    out_dir: Path,
    result: AllocationResult,
    deposits: Sequence[Deposit],
    quarantine: Sequence[tuple[str, str]],
) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = list(result.lines())
    _write_csv_atomically(
        out_dir / "allocation_lines.csv",
        ("seq", "source_id", "kind", "recipient_id", "fiat_cents", "sats"),
        ((x.seq, x.source_id, x.kind, x.recipient_id or "", x.fiat_cents, x.sats) for x in lines),
    )
    _write_csv_atomically(
        out_dir / "balances.csv",
        ("client_id", "remaining_cents"),
        sorted(result.balances(deposits).items()),
    )
    _write_csv_atomically(out_dir / "quarantine.csv", ("source_id", "reason"), quarantine)
    # Fixed runs with no reference rate (§5): skipped, listed in processing order.
    _write_csv_atomically(
        out_dir / "skipped_fixed_runs.csv",
        ("source_id", "reason"),
        ((skip.source_id, skip.reason) for skip in result.skipped),
    )
    return len(lines)


def simulate(
    inputs: SimulationInputs,
    rules: BusinessRules,
    out_dir: Path,
    *,
    now: datetime | None = None,
) -> SimulationOutcome:
    """Everything `dca-pipeline simulate` does. Raises InputRefused / ExportRefused /
    EngineError before writing anything; a fixed run with no reference rate is not an error
    (it is skipped and listed in skipped_fixed_runs.csv, §5)."""
    result, deposits, quarantine, allocated = run_simulation(inputs, rules, now=now)
    written = write_outputs(out_dir, result, deposits, quarantine)
    return SimulationOutcome(
        lines_written=written,
        clients=len(result.state.allocated_cents),
        quarantined=len(quarantine),
        cash_outs_allocated=allocated,
        fixed_runs_skipped=len(result.skipped),
    )


REFUSALS = (InputRefused, ExportRefused, EngineError)
