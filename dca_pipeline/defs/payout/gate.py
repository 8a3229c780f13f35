"""The payout job's own guard: pay nothing while a blocking money check is not green.

A blocking check stops only the steps downstream of it *inside its own run*
(``../shared/reference/dagster.md`` §2b); the payout job runs separately, so it reads the
**latest run's evaluation** of every money check from the instance and refuses when it failed
(ERROR severity), did not complete, is still running, or does not cover the latest
materialization of its asset (money nobody checked, e.g. the asset materialized alone).

Why per latest *run* and not per partition: in a single-run range backfill (1.13.27) Dagster
records one PLANNED row per partition but the evaluation itself without a partition, so the
per-partition rows stay PLANNED forever (verified). The allocation stage keeps a failure open
in its ledger until it is resolved, so a later run over other days still fails its check.
"""

from collections.abc import Sequence

import dagster as dg
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)

HISTORY_LIMIT = 400  # a range run of a year writes one PLANNED row per day before its result
_DONE = (AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED)


def money_check_keys() -> tuple[dg.AssetCheckKey, ...]:
    """The allocation stage's blocking money checks (read at run time, so it is always current)."""
    try:
        from dca_pipeline.defs.allocate.checks import MONEY_CHECK_KEYS
    except ImportError:  # pragma: no cover - only while the allocation stage is absent
        return ()
    return tuple(sorted(MONEY_CHECK_KEYS, key=lambda key: key.to_user_string()))


def _blocks(record: AssetCheckExecutionRecord) -> bool:
    evaluation = record.evaluation
    severity = evaluation.severity if evaluation is not None else dg.AssetCheckSeverity.ERROR
    return (
        record.status is AssetCheckExecutionRecordStatus.FAILED
        and severity is dg.AssetCheckSeverity.ERROR
    )


def _problem(
    instance: dg.DagsterInstance, key: dg.AssetCheckKey, require_current: bool
) -> str | None:
    name = key.to_user_string()
    history = instance.event_log_storage.get_asset_check_execution_history(key, limit=HISTORY_LIMIT)
    latest = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key.asset_key), limit=1, ascending=False
    ).records
    if not history:
        return f"{name}: never evaluated, but its asset has data" if latest else None
    run_id = history[0].run_id
    in_run = [record for record in history if record.run_id == run_id]
    done = [record for record in in_run if record.status in _DONE]
    if any(_blocks(record) for record in done):
        return f"{name}: failed (run {run_id[:8]})"
    if not done:
        run = instance.get_run_by_id(run_id)
        state = "is still running" if run is not None and not run.is_finished else "never finished"
        return f"{name}: its latest run {run_id[:8]} {state}"
    if require_current and latest and latest[0].run_id != run_id:
        targets = [
            record.evaluation.target_materialization_data.storage_id
            for record in done
            if record.evaluation is not None
            and record.evaluation.target_materialization_data is not None
        ]
        if not targets or latest[0].storage_id > max(targets):
            return f"{name}: not evaluated for the latest materialization of its asset"
    return None


def blocking_check_problems(
    instance: dg.DagsterInstance,
    check_keys: Sequence[dg.AssetCheckKey],
    *,
    require_current: bool = True,
) -> list[str]:
    """Why paying is not safe now (empty: every check is green for the latest data)."""
    problems = [_problem(instance, key, require_current) for key in check_keys]
    return [problem for problem in problems if problem is not None]
