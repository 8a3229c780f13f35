"""The payout job's own guard: pay nothing while a blocking money check is not green.

A blocking check stops only the steps downstream of it *inside its own run*
(``../shared/reference/dagster.md`` §2b); the payout job runs separately, so it reads the
latest evaluation of every money check (per partition) from the instance and refuses when any
failed, did not complete, is still running, or does not cover the latest materialization of
its asset (money that nobody checked).
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus


def money_check_keys() -> tuple[dg.AssetCheckKey, ...]:
    """The allocation stage's blocking money checks (read at run time, so it is always current)."""
    try:
        from dca_pipeline.defs.allocate.checks import MONEY_CHECK_KEYS
    except ImportError:
        return ()
    return tuple(MONEY_CHECK_KEYS)


def blocking_check_problems(
    instance: dg.DagsterInstance,
    check_keys: Sequence[dg.AssetCheckKey],
    *,
    require_current: bool = True,
) -> list[str]:
    """Why paying is not safe now (empty: every check is green for the latest data)."""
    problems: list[str] = []
    if not check_keys:
        return problems
    infos = instance.event_log_storage.get_asset_check_partition_info(list(check_keys))
    seen = {info.check_key for info in infos}
    for info in infos:
        name = info.check_key.to_user_string()
        if info.partition_key:
            name += f" [{info.partition_key}]"
        status = info.latest_execution_status
        if status is AssetCheckExecutionRecordStatus.FAILED:
            problems.append(f"{name}: failed")
        elif status is AssetCheckExecutionRecordStatus.PLANNED:
            run = instance.get_run_by_id(info.latest_planned_run_id)
            state = "is still running" if run is not None and not run.is_finished else "never ran"
            problems.append(f"{name}: planned but {state}")
        elif require_current and not info.is_current:
            problems.append(f"{name}: not evaluated for the latest materialization")
    for key in check_keys:
        if key not in seen and instance.get_latest_materialization_event(key.asset_key):
            problems.append(f"{key.to_user_string()}: never evaluated, but its asset has data")
    return problems
