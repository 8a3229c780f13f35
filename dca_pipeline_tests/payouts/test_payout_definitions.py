"""The payout stage as the code location loads it (what the UI and the daemon see)."""

from __future__ import annotations

import dagster as dg

from dca_pipeline.defs.payout.jobs import PAYOUT_TAG


def test_the_code_location_has_the_payout_stage() -> None:
    from dca_pipeline.definitions import defs as lazy_defs

    defs = lazy_defs()
    job = defs.resolve_job_def("payout_job")
    assert job.tags[PAYOUT_TAG] == "1"  # dagster.yaml limits this tag to one run at a time
    assert [node.name for node in job.graph.nodes] == ["send_payouts"]
    sensors = {sensor.name: sensor for sensor in defs.sensors or []}
    payout = sensors["payout_sensor"]
    assert payout.job_name == "payout_job"
    assert payout.default_status is dg.DefaultSensorStatus.STOPPED
    assert payout.minimum_interval_seconds == 30
    assert sensors["operator_alerts_sensor"].default_status is dg.DefaultSensorStatus.RUNNING
    graph = defs.resolve_asset_graph()
    node = graph.get(dg.AssetKey("payout_reconciliation"))
    assert node.group_name == "payouts"
    check = dg.AssetCheckKey(dg.AssetKey("payout_reconciliation"), "ledger_matches_lnbits")
    assert check in graph.asset_check_keys
    for name in ("lnbits", "alerts", "ledger", "settings"):
        assert name in defs.resources
