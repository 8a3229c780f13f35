"""Run the whole pipeline once over a period, headlessly, on any Dagster instance.

Used by ``dca-pipeline demo`` (embedded SQLite instance) and by the dagster-postgres end-to-end
test (instance built from ``deploy/dagster.postgres.yaml``), so both exercise the same path:

1. every business-day-partitioned asset over ``first_day..last_day`` as ONE run (the range tags
   of a single-run backfill: the assets declare ``BackfillPolicy.single_run``), with their checks;
2. the payout job, if the code defines one;
3. the unpartitioned assets (e.g. the payout reconciliation report), with their checks.

Runs execute in-process against ``instance`` (its run/event storage records them, so the UI
shows them), with the resources and executor of the Definitions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
PAYOUT_JOB = "payout_job"
#: The console shows what happened (INFO: the stages' own summaries), not every engine event;
#: the instance keeps the full event log for the UI either way.
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


@dataclass(frozen=True)
class CheckOutcome:
    asset: str
    check: str
    passed: bool
    severity: str
    description: str | None = None


@dataclass
class StageOutcome:
    """One run of the pipeline: what it materialized and what its checks said."""

    stage: str
    run_id: str | None
    success: bool
    materializations: dict[str, int] = field(default_factory=dict)
    checks: list[CheckOutcome] = field(default_factory=list)
    failed_steps: list[str] = field(default_factory=list)
    error: str | None = None
    skipped_reason: str | None = None

    @property
    def failed_checks(self) -> list[CheckOutcome]:
        return [c for c in self.checks if not c.passed]


def _outcome(stage: str, result: dg.ExecuteInProcessResult) -> StageOutcome:
    materializations: dict[str, int] = {}
    for event in result.get_asset_materialization_events():
        key = event.asset_key.to_user_string() if event.asset_key else "?"
        materializations[key] = materializations.get(key, 0) + 1
    checks = [
        CheckOutcome(
            asset=evaluation.asset_key.to_user_string(),
            check=evaluation.check_name,
            passed=evaluation.passed,
            severity=evaluation.severity.value,
            description=evaluation.description,
        )
        for evaluation in result.get_asset_check_evaluations()
    ]
    failure = None if result.success else result.get_run_failure_event()
    return StageOutcome(
        stage=stage,
        run_id=result.run_id,
        success=result.success,
        materializations=materializations,
        checks=checks,
        failed_steps=list(result.get_failed_step_keys()),
        error=failure.message if failure is not None else None,
    )


def asset_keys_by_partitioning(
    defs: dg.Definitions,
) -> tuple[list[dg.AssetKey], list[dg.AssetKey]]:
    """(partitioned, unpartitioned) materializable asset keys, in a stable order."""
    graph = defs.resolve_asset_graph()
    partitioned, unpartitioned = [], []
    for key in sorted(graph.materializable_asset_keys, key=lambda k: k.to_user_string()):
        (partitioned if graph.get(key).partitions_def is not None else unpartitioned).append(key)
    return partitioned, unpartitioned


def _materialize(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    stage: str,
    keys: Sequence[dg.AssetKey],
    tags: Mapping[str, str],
) -> StageOutcome:
    job = defs.resolve_implicit_job_def_def_for_assets(list(keys))
    if job is None:  # pragma: no cover - only when keys span incompatible partitionings
        return StageOutcome(stage, None, False, error="no single job can run these assets")
    result = job.execute_in_process(
        run_config=QUIET_LOGS,
        instance=instance,
        asset_selection=list(keys),
        tags={"dca/demo-stage": stage, **tags},
        raise_on_error=False,
    )
    return _outcome(stage, result)


def _has_job(defs: dg.Definitions, name: str) -> bool:
    return any(job.name == name for job in defs.resolve_all_job_defs())


def run_pipeline(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    *,
    first_day: str,
    last_day: str,
    payout_run_config: Mapping[str, Any] | None = None,
) -> list[StageOutcome]:
    """Materialize ``first_day..last_day`` as one run, pay, then report; one outcome per run.

    A later stage is skipped (with the reason) when an earlier one failed, exactly as a failed
    blocking check keeps the payout sensor from launching payouts in live operation.
    """
    partitioned, unpartitioned = asset_keys_by_partitioning(defs)
    outcomes: list[StageOutcome] = []
    if partitioned:
        outcomes.append(
            _materialize(
                defs,
                instance,
                "daily assets",
                partitioned,
                {RANGE_START_TAG: first_day, RANGE_END_TAG: last_day},
            )
        )

    blocked = next((o.stage for o in outcomes if not o.success), None)
    if _has_job(defs, PAYOUT_JOB):
        if blocked:
            outcomes.append(
                StageOutcome("payouts", None, False, skipped_reason=f"{blocked} failed")
            )
        else:
            result = defs.resolve_job_def(PAYOUT_JOB).execute_in_process(
                instance=instance,
                run_config={**QUIET_LOGS, **(payout_run_config or {})},
                tags={"dca/demo-stage": "payouts", "dca/payout": "1"},
                raise_on_error=False,
            )
            outcomes.append(_outcome("payouts", result))

    blocked = next((o.stage for o in outcomes if not o.success), None)
    if unpartitioned:
        if blocked:
            outcomes.append(
                StageOutcome("reports", None, False, skipped_reason=f"{blocked} failed")
            )
        else:
            outcomes.append(_materialize(defs, instance, "reports", unpartitioned, {}))
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dca_pipeline.demo.runner --first-day D --last-day D [--json PATH]``.

    Runs :func:`run_pipeline` on the instance of ``$DAGSTER_HOME`` in a fresh process, so the
    settings the code location reads at import (``DCA_*``) are the ones in the environment.
    Exit status 0 when every run succeeded and every check passed, else 1.
    """
    import argparse
    import json
    from dataclasses import asdict
    from pathlib import Path

    from dca_pipeline.definitions import defs

    parser = argparse.ArgumentParser(prog="python -m dca_pipeline.demo.runner")
    parser.add_argument("--first-day", required=True)
    parser.add_argument("--last-day", required=True)
    parser.add_argument("--json", type=Path, help="write the outcomes here")
    args = parser.parse_args(argv)
    definitions = defs()
    partitioned, unpartitioned = asset_keys_by_partitioning(definitions)
    with dg.DagsterInstance.get() as instance:
        outcomes = run_pipeline(
            definitions, instance, first_day=args.first_day, last_day=args.last_day
        )
    if args.json:
        report = {
            "partitioned": [k.to_user_string() for k in partitioned],
            "unpartitioned": [k.to_user_string() for k in unpartitioned],
            "outcomes": [asdict(o) for o in outcomes],
        }
        args.json.write_text(json.dumps(report, indent=2))
    ok = all(o.success for o in outcomes) and not any(o.failed_checks for o in outcomes)
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(main())
