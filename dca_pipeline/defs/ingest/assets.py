"""Ingest assets: the three Lamassu tables landed raw, and the validated cash-outs.

* ``lamassu_cash_out_txs``, ``lamassu_cash_out_actions``, ``lamassu_cash_in_txs`` (group
  ``raw``): ONE step fetches the three exports of the window from the ``lamassu`` resource and
  lands them in one ledger transaction (``lamassu_raw_rows`` upserted by ``(table, id)``, every
  distinct version appended to ``lamassu_raw_revisions``). A source error, or an export that is
  not a valid CSV with the required columns, raises before anything is written: nothing lands,
  nothing is deleted, and the next run re-reads the same window.
* ``validated_cash_outs`` (group ``validated``): re-validates the landed cash-outs of the window
  through the one validation (:func:`dca_pipeline.lamassu.validation.validate_cash_outs`, the
  same code ``dca-pipeline simulate`` runs), upserts ``validated_cash_outs`` and writes the
  quarantine, then evaluates its checks (see :mod:`dca_pipeline.defs.ingest.checks`).

Window of a run over business days D1..Dn: ``[start of D1 − overlap_hours, end of Dn)``, because
Lamassu rows keep changing for about a day after they are created (business-rules §2). The raw
step records what it landed in ``lamassu_fetches`` in the landing transaction: that window with
its end clipped to the instant the fetch started (a live run of today lands only up to then);
``landing.landed_through`` merges those windows (business-rules §4a "only landed data counts").
"""


from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
from dagster_pandera import pandera_schema_to_dagster_type

from dca_pipeline.defs.ingest.checks import CHECK_SPECS, evaluate_checks
from dca_pipeline.defs.settings import BusinessSettings, business_days
from dca_pipeline.domain.money import format_cents
from dca_pipeline.lamassu.columns import REQUIRED_COLUMNS
from dca_pipeline.lamassu.csv_io import read_export
from dca_pipeline.lamassu.models import ValidatedCashOut
from dca_pipeline.lamassu.validation import validate_cash_outs
from dca_pipeline.lamassu.vectorized import TextColumn, utc_timestamp
from dca_pipeline.ledger import landing
from dca_pipeline.ledger.resource import LedgerResource
from dca_pipeline.sources import FetchWindow, LamassuTable, fetch_tables

RAW_KEYS: dict[LamassuTable, dg.AssetKey] = {
    table: dg.AssetKey(f"lamassu_{table.value}") for table in LamassuTable
}
VALIDATED_KEY = dg.AssetKey("validated_cash_outs")
PREVIEW_ROWS = 5

_RAW_DESCRIPTIONS = {
    LamassuTable.CASH_OUT_TXS: "Lamassu cash_out_txs rows exactly as exported (every column), "
    "latest version per id; every distinct version in lamassu_raw_revisions.",
    LamassuTable.CASH_OUT_ACTIONS: "Lamassu cash_out_actions (the dispense action carries a "
    "cash-out's event time), landed unchanged, upserted by id.",
    LamassuTable.CASH_IN_TXS: "Lamassu cash_in_txs landed unchanged for analysts; they "
    "allocate nothing.",
}


def fetch_window(context: dg.AssetExecutionContext, settings: BusinessSettings) -> FetchWindow:
    """[first day's start − overlap, last day's end) of the run's partition range, in UTC."""
    window = context.partition_time_window
    return FetchWindow.covering(
        window.start - timedelta(hours=settings.overlap_hours), window.end
    )


def landed_window(window: FetchWindow, fetched_at: datetime) -> FetchWindow | None:
    """What a fetch of ``window`` that started at ``fetched_at`` has landed: the window with its
    end clipped to ``fetched_at`` (rows created later may not exist yet: a live fetch of today
    covers only up to the fetch), or None when the window lies wholly in the future."""
    end = min(window.end, fetched_at.astimezone(UTC))
    return FetchWindow(window.start, end) if window.start < end else None


def _created_in(frame: pd.DataFrame, window: FetchWindow) -> np.ndarray:
    """Rows created in the window, and rows whose ``created`` cannot be read (validation
    quarantines those; dropping them here would hide them)."""
    if frame.empty or "created" not in frame.columns:
        return np.ones(len(frame), dtype=bool)
    ok, created = utc_timestamp(TextColumn(frame["created"].to_numpy(dtype=object)))
    start, end = pd.Timestamp(window.start), pd.Timestamp(window.end)
    inside = np.asarray((created >= start) & (created < end), dtype=bool)
    return ~ok | inside


def window_rows(exports: dict[LamassuTable, pd.DataFrame], window: FetchWindow):
    """What a SQL source returns for the window (a folder export may hold more days)."""
    cash_outs = exports[LamassuTable.CASH_OUT_TXS]
    cash_outs = cash_outs.loc[_created_in(cash_outs, window)]
    cash_ins = exports[LamassuTable.CASH_IN_TXS]
    actions = exports[LamassuTable.CASH_OUT_ACTIONS]
    actions = actions.loc[actions["tx_id"].isin(set(cash_outs["id"].dropna()))]
    return {
        LamassuTable.CASH_OUT_TXS: cash_outs,
        LamassuTable.CASH_OUT_ACTIONS: actions,
        LamassuTable.CASH_IN_TXS: cash_ins.loc[_created_in(cash_ins, window)],
    }


def _markdown(frame: pd.DataFrame, columns: list[str]) -> str:
    shown = frame.loc[:, [c for c in columns if c in frame.columns]].head(PREVIEW_ROWS)
    if shown.empty:
        return "_no rows_"
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    for values in shown.itertuples(index=False):
        lines.append("| " + " | ".join("" if v is None else str(v) for v in values) + " |")
    return "\n".join(lines)


_RAW_PREVIEW = {
    LamassuTable.CASH_OUT_TXS: ["id", "created", "fiat", "crypto_atoms", "crypto_code", "status",
                                "dispense", "error"],
    LamassuTable.CASH_OUT_ACTIONS: ["id", "tx_id", "action", "created"],
    LamassuTable.CASH_IN_TXS: ["id", "created", "fiat", "crypto_atoms", "crypto_code"],
}  # fmt: skip


@dg.multi_asset(
    specs=[
        dg.AssetSpec(RAW_KEYS[t], group_name="raw", kinds={"sqlalchemy"},
                     description=_RAW_DESCRIPTIONS[t])
        for t in LamassuTable
    ],  # fmt: skip
    partitions_def=business_days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    required_resource_keys={"lamassu", "settings", "ledger"},
    can_subset=False,
)
def lamassu_raw(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult]:
    """Fetch the window's three exports and land them in ONE transaction (all or nothing)."""
    settings: BusinessSettings = context.resources.settings
    ledger: LedgerResource = context.resources.ledger
    source = context.resources.lamassu
    window = fetch_window(context, settings)
    context.log.info(f"fetching Lamassu rows created in [{window.start}, {window.end})")
    fetched_at = datetime.now(UTC)
    exports = fetch_tables(source, window)  # SourceError: the run fails, nothing is landed
    frames = {t: read_export(exports[t], t.value, name=f"{t.value} export") for t in LamassuTable}
    frames = window_rows(frames, window)
    now = datetime.now(UTC)
    rules = settings.rules()
    covered = landed_window(window, fetched_at)
    with ledger.begin() as connection:
        counts = {
            t: landing.land_export(connection, t.value, frames[t], rules=rules, now=now)
            for t in LamassuTable
        }
        if covered is not None:  # in the same transaction: landed rows and window, or neither
            landing.record_fetch(
                connection, covered.start, covered.end, now, context.run.run_id,
                rows={t.value: len(frames[t]) for t in LamassuTable},
            )  # fmt: skip
    describe = getattr(source, "describe", None)
    for table in LamassuTable:
        metadata: dict[str, Any] = {
            **counts[table].metadata(),
            "window_start": window.start.isoformat(),
            "window_end": window.end.isoformat(),
            # The end recorded in lamassu_fetches (clipped to the fetch instant); "" = none.
            "recorded_window_end": covered.end.isoformat() if covered else "",
            "source": describe() if describe else type(source).__name__,
            "export_bytes": len(exports[table]),
            "preview": dg.MetadataValue.md(_markdown(frames[table], _RAW_PREVIEW[table])),
        }
        if table is not LamassuTable.CASH_OUT_ACTIONS:
            metadata["fiat_total"] = str(counts[table].fiat_total.quantize(Decimal("0.01")))
        yield dg.MaterializeResult(asset_key=RAW_KEYS[table], metadata=metadata)


def _accepts_ledger_backed_output(_context: Any, value: object) -> dg.TypeCheck:
    # The asset returns a MaterializeResult (no value: the ledger is the storage) after running
    # ValidatedCashOut.validate on the frame itself; a frame handed over is checked here too.
    if not isinstance(value, pd.DataFrame):
        return dg.TypeCheck(success=True, description="stored in the ledger, validated in-step")
    return _PANDERA_TYPE.type_check(_context, value)


_PANDERA_TYPE = pandera_schema_to_dagster_type(ValidatedCashOut)
#: The pandera model as the asset's Dagster type (its columns and checks show in the UI).
ValidatedCashOutType = dg.DagsterType(
    type_check_fn=_accepts_ledger_backed_output,
    name=_PANDERA_TYPE.unique_name,
    description=_PANDERA_TYPE.description,
    metadata=_PANDERA_TYPE.metadata,
)


class _LedgerIsTheStorage(dg.IOManager):
    """The asset writes ``validated_cash_outs`` itself; a downstream input reads it back.

    Needed because a typed output goes through an IO manager, and the default one cannot
    store a multi-partition (single-run backfill) output.
    """

    def __init__(self, ledger: LedgerResource) -> None:
        self._ledger = ledger

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        return None  # already in the ledger, in the step's own transaction

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        window = context.asset_partitions_time_window
        with self._ledger.begin() as connection:
            return landing.validated_rows(
                connection, window.start.date(), (window.end - timedelta(days=1)).date()
            )


@dg.io_manager(required_resource_keys={"ledger"})
def ledger_is_the_storage(init_context: dg.InitResourceContext) -> _LedgerIsTheStorage:
    return _LedgerIsTheStorage(init_context.resources.ledger)


def _empty_cash_outs() -> pd.DataFrame:
    return pd.DataFrame(columns=list(REQUIRED_COLUMNS["cash_out_txs"]), dtype=object)


@dg.asset(
    key=VALIDATED_KEY,
    group_name="validated",
    kinds={"pandas", "sqlalchemy"},
    partitions_def=business_days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[RAW_KEYS[LamassuTable.CASH_OUT_TXS], RAW_KEYS[LamassuTable.CASH_OUT_ACTIONS]],
    dagster_type=ValidatedCashOutType,
    io_manager_def=ledger_is_the_storage,
    check_specs=CHECK_SPECS,
    required_resource_keys={"settings", "ledger"},
    description=(
        "Landed cash-outs of the window parsed exactly and validated (business-rules §2, §3, "
        "§8) by the one validation; eligible or flagged ineligible with the reason. Rows that "
        "break the schema go to the quarantine table with the reason and the raw row. "
        "Ledger: validated_cash_outs, quarantine."
    ),
)
def validated_cash_outs(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    settings: BusinessSettings = context.resources.settings
    ledger: LedgerResource = context.resources.ledger
    rules = settings.rules()
    window = fetch_window(context, settings)
    now = datetime.now(UTC)
    with ledger.begin() as connection:
        cash_outs, row_hashes = landing.landed_cash_outs(connection, window.start, window.end)
        if cash_outs.empty:
            cash_outs = _empty_cash_outs()
        actions = landing.landed_actions(connection, window.start)
        result = validate_cash_outs(cash_outs, actions, rules=rules, now=now)
        counts = landing.store_validation(
            connection, result.valid, result.quarantine, row_hashes, rules=rules, now=now
        )
    first_day = context.partition_key_range.start
    last_day = context.partition_key_range.end
    with ledger.begin() as connection:
        check_results = evaluate_checks(connection, window, first_day, last_day)
    valid = result.valid
    preview = valid.assign(
        fiat=valid["fiat_cents"].map(format_cents),
        event_time=valid["event_time"].astype(str),
    )
    metadata: dict[str, Any] = {
        "window_start": window.start.isoformat(),
        "window_end": window.end.isoformat(),
        "rows_validated": counts.valid,
        "rows_new": counts.new,
        "rows_changed": counts.changed,
        "rows_unchanged": counts.unchanged,
        "eligible": counts.eligible,
        "eligible_fiat_total": format_cents(counts.fiat_cents_eligible),
        "quarantined": counts.quarantined,
        "quarantine_resolved": counts.resolved,
        "rows_read_row_wise": result.rowwise_rows,
        "became_ineligible": dg.MetadataValue.json(counts.newly_ineligible[:50]),
        "withdrawn_by_quarantine": dg.MetadataValue.json(counts.withdrawn[:50]),
        "preview": dg.MetadataValue.md(
            _markdown(preview, ["id", "event_time", "business_day", "fiat", "principal_sats",
                                "commission_sats", "eligible", "ineligible_reason"])
        ),  # fmt: skip
    }
    if counts.newly_ineligible or counts.withdrawn:
        context.log.warning(
            f"{len(counts.newly_ineligible) + len(counts.withdrawn)} cash-out(s) were eligible "
            "and are not any more (error set after dispense, or a quarantined new version); "
            "the allocation checks flag any that were already allocated"
        )
    return dg.MaterializeResult(metadata=metadata, check_results=check_results)
