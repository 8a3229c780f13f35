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

Only the instance's public methods are used: the latest evaluation record of a check gives its
latest run, and that run's ``ASSET_CHECK_EVALUATION`` events give every evaluation it made.
"""

from collections.abc import Sequence

import dagster as dg


def money_check_keys() -> tuple[dg.AssetCheckKey, ...]:
    """The allocation stage's blocking money checks (read at run time, so it is always current)."""
    try:
        from dca_pipeline.defs.allocate.checks import MONEY_CHECK_KEYS
    except ImportError:  # pragma: no cover - only while the allocation stage is absent
        return ()
    return tuple(sorted(MONEY_CHECK_KEYS, key=lambda key: key.to_user_string()))


def _blocks(evaluation: dg.AssetCheckEvaluation) -> bool:
    return not evaluation.passed and evaluation.severity is dg.AssetCheckSeverity.ERROR


def _evaluations_in_run(
    instance: dg.DagsterInstance, run_id: str, key: dg.AssetCheckKey
) -> list[dg.AssetCheckEvaluation]:
    """Every finished evaluation of ``key`` in run ``run_id`` (its evaluation events)."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    evaluations = []
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        evaluation = event.asset_check_evaluation_data
        if evaluation.asset_check_key == key:
            evaluations.append(evaluation)
    return evaluations


def _problem(
    instance: dg.DagsterInstance, key: dg.AssetCheckKey, require_current: bool
) -> str | None:
    name = key.to_user_string()
    newest = instance.get_latest_asset_check_evaluation_record(key)
    latest = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key.asset_key), limit=1, ascending=False
    ).records
    if newest is None:
        return f"{name}: never evaluated, but its asset has data" if latest else None
    run_id = newest.run_id
    done = _evaluations_in_run(instance, run_id, key)
    if any(_blocks(evaluation) for evaluation in done):
        return f"{name}: failed (run {run_id[:8]})"
    if not done:
        run = instance.get_run_by_id(run_id)
        state = "is still running" if run is not None and not run.is_finished else "never finished"
        return f"{name}: its latest run {run_id[:8]} {state}"
    if require_current and latest and latest[0].run_id != run_id:
        targets = [
            evaluation.target_materialization_data.storage_id
            for evaluation in done
            if evaluation.target_materialization_data is not None
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
