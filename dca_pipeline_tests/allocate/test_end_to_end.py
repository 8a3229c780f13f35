"""Raw → validated → allocations on the bundled sample, in ONE run, equal to `simulate`."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from dca_pipeline.defs.allocate.assets import allocations
from dca_pipeline.defs.ingest.assets import lamassu_raw, validated_cash_outs
from dca_pipeline.defs.settings import BusinessSettings
from dca_pipeline.domain.rules import BusinessRules
from dca_pipeline.ledger import allocations as al
from dca_pipeline.ledger import schema as s
from dca_pipeline.simulate import (
    SINCE_ALWAYS,
    SimulationInputs,
    load_clients,
    load_commission,
    load_deposits,
    run_simulation,
)
from dca_pipeline.sources import FolderLamassuSource

pytestmark = pytest.mark.dagster
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
FIRST, LAST = date(2025, 6, 1), date(2025, 6, 7)
RULES = BusinessRules()


def _seed_admin_from_sample(engine: sa.Engine) -> None:
    """The sample's clients, deposits and commission, as the admin CLI would record them."""
    clients = load_clients(SAMPLE / "clients.csv", RULES)
    deposits = load_deposits(SAMPLE / "deposits.csv", [c.client_id for c in clients])
    (version,) = load_commission(SAMPLE / "commission.csv")
    with engine.begin() as c:
        for change in clients:
            c.execute(s.clients.insert().values(
                client_id=change.client_id, lnbits_user_id=f"u-{change.client_id}",
                wallet_id=f"wallet-{change.client_id}", invoice_key="not-a-real-key-000",
                created_at=SINCE_ALWAYS,
            ))
            c.execute(s.client_settings.insert().values(
                client_id=change.client_id, effective_at=SINCE_ALWAYS, mode=change.mode,
                status=change.status, daily_limit_cents=change.daily_limit_cents,
                recorded_at=SINCE_ALWAYS,
            ))
        for d in deposits:
            c.execute(s.deposits.insert().values(
                deposit_id=d.deposit_id, client_id=d.client_id, amount_cents=d.amount_cents,
                currency="GTQ", status="confirmed", created_at=d.confirmed_at,
                confirmed_at=d.confirmed_at,
            ))
        version_id = c.execute(
            s.commission_versions.insert().values(effective_at=SINCE_ALWAYS,
                                                  recorded_at=SINCE_ALWAYS)
            .returning(s.commission_versions.c.version_id)
        ).scalar_one()
        c.execute(s.commission_recipients.insert(), [
            dict(version_id=version_id, recipient_id=r.recipient_id, wallet_id=r.wallet_id,
                 invoice_key="not-a-real-key-000", basis_points=r.basis_points)
            for r in version.recipients
        ])


@pytest.mark.slow
def test_sample_raw_to_allocations_in_one_run_equals_simulate(ledger) -> None:  # type: ignore[no-untyped-def]
    engine = ledger.engine()
    _seed_admin_from_sample(engine)
    instance = dg.DagsterInstance.ephemeral()
    resources = {
        "lamassu": FolderLamassuSource(directory=str(SAMPLE / "lamassu")),
        "ledger": ledger,
        "settings": BusinessSettings(),
    }
    tags = {"dagster/asset_partition_range_start": FIRST.isoformat(),
            "dagster/asset_partition_range_end": LAST.isoformat()}
    result = dg.materialize([lamassu_raw, validated_cash_outs, allocations], resources=resources,
                            instance=instance, tags=tags, raise_on_error=False)
    assert result.success
    assert len(instance.get_run_records()) == 1
    assert all(e.passed for e in result.get_asset_check_evaluations()
               if e.asset_key.to_user_string() in ("flow_allocations", "client_balances"))

    expected, _, _, allocated = run_simulation(
        SimulationInputs(
            cash_outs=SAMPLE / "lamassu" / "cash_out_txs.csv",
            cash_out_actions=SAMPLE / "lamassu" / "cash_out_actions.csv",
            clients=SAMPLE / "clients.csv",
            deposits=SAMPLE / "deposits.csv",
            commission=SAMPLE / "commission.csv",
            first_day=FIRST,
            last_day=LAST,
        ),
        RULES,
    )
    with engine.connect() as c:
        ledger_lines = al.ledger_lines_in_order(c, FIRST, LAST)
        balances = {cid: rem for cid, _, _, rem in al.client_balances(c)}
    assert allocated > 0 and ledger_lines == al.simulate_like_lines(expected)
    deposits = load_deposits(SAMPLE / "deposits.csv",
                             [c.client_id for c in load_clients(SAMPLE / "clients.csv", RULES)])
    assert balances == expected.balances(deposits)

    again = dg.materialize([lamassu_raw, validated_cash_outs, allocations], resources=resources,
                           instance=instance, tags=tags, raise_on_error=False)
    assert again.success
    with engine.connect() as c:
        assert al.ledger_lines_in_order(c, FIRST, LAST) == ledger_lines
