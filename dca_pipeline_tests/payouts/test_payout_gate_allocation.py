"""The real payout job's gate against the real allocation stage's blocking money checks."""

from __future__ import annotations

from datetime import date

import dagster as dg
import pytest
import sqlalchemy as sa

from dca_pipeline.defs.allocate.assets import allocations
from dca_pipeline.defs.allocate.checks import MONEY_CHECK_KEYS
from dca_pipeline.defs.payout.gate import blocking_check_problems, money_check_keys
from dca_pipeline.defs.payout.jobs import payout_job
from dca_pipeline.defs.payout.resources import AlertsResource, lnbits_from_env
from dca_pipeline.defs.settings import BusinessSettings
from dca_pipeline.ledger import schema as s
from dca_pipeline_tests.allocate.seeding import Scenario, seed_scenario
from dca_pipeline_tests.payouts.seeding import Line, append_line

pytestmark = [
    pytest.mark.dagster,
    pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True),
]


def materialize(ledger, first: date, last: date | None = None, *, instance):  # type: ignore[no-untyped-def]
    """The allocation assets over [first, last] as ONE run (a single-run backfill)."""
    return dg.materialize(
        [allocations],
        resources={"ledger": ledger, "settings": BusinessSettings()},
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": (last or first).isoformat(),
        },
        raise_on_error=False,
    )


SMALL = Scenario(
    date(2025, 5, 1), date(2025, 5, 3), flow_clients=4, fixed_clients=1, cash_outs_per_day=3
)


def test_range_run_passes_the_gate_and_a_tampered_ledger_blocks_the_payout_job(
    ledger, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("DCA_LNBITS_URL", raising=False)
    assert set(money_check_keys()) == MONEY_CHECK_KEYS and MONEY_CHECK_KEYS
    with ledger.engine().begin() as c:
        seed_scenario(c, SMALL)
    instance = dg.DagsterInstance.ephemeral()
    assert blocking_check_problems(instance, money_check_keys()) == []  # nothing yet

    # One run over a range: the per-partition PLANNED rows must not read as "never ran".
    assert materialize(ledger, SMALL.first_day, SMALL.last_day, instance=instance).success
    assert blocking_check_problems(instance, money_check_keys()) == []
    resources = {
        "ledger": ledger,
        "lnbits": lnbits_from_env(),  # unset: a dry run plans without LNbits
        "alerts": AlertsResource(),
        "settings": BusinessSettings(),
    }
    dry = {"ops": {"send_payouts": {"config": {"dry_run": True}}}}
    ok = payout_job.execute_in_process(instance=instance, resources=resources, run_config=dry)
    assert ok.success

    with ledger.engine().connect() as c:
        victim = c.execute(
            sa.select(s.allocation_lines).where(s.allocation_lines.c.kind == "flow").limit(1)
        ).one()
    line = Line("flow", victim.recipient_id, victim.wallet_id, 1, 1)
    append_line(ledger.engine(), victim.source_id, 999, line, victim.business_day)
    assert not materialize(ledger, victim.business_day, instance=instance).success
    problems = blocking_check_problems(instance, money_check_keys())
    assert any("flow_allocations:ledger_reproduces: failed" in p for p in problems)
    refused = payout_job.execute_in_process(
        instance=instance, resources=resources, run_config=dry, raise_on_error=False
    )
    assert not refused.success
    assert "refusing to pay" in refused.get_step_failure_events()[0].step_failure_data.error.message
