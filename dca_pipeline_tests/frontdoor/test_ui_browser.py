"""The Dagster UI, served like production, proven in a real headless Chromium.

Topology of ``deploy/``: a gRPC code server (``dagster api grpc``) and a ``dagster-webserver``
reading ``deploy/workspace.grpc.yaml``, both on free 127.0.0.1 ports, with a throwaway
``DAGSTER_HOME`` holding the embedded-default ``dagster.yaml``; the daemon joins for the last
test (a payout run queued with the runbook's command is dequeued and run). The sample week is
materialized first. Debian's ``chromium`` (installed by ``scripts/bootstrap.sh``; never a
downloaded browser) renders the global lineage, every group's graph and one asset's checks; the
tests assert from the rendered DOM text that every asset, check and partitioning the code
defines is shown, and save screenshots under ``build/ui/``.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from dca_pipeline.demo.processes import free_loopback_port
from dca_pipeline.demo.seed import (
    SAMPLE_FIRST_DAY,
    SAMPLE_LAST_DAY,
    copy_sample_lamassu,
    placeholder_wallets,
    seed_ledger,
)
from dca_pipeline.demo.servers import (
    LOAD_TIMEOUT_S,
    LOCATION_NAME,
    REPO_ROOT,
    dismiss_community_prompt,
    graphql,
    grpc_workspace_file,
    start_code_server,
    start_daemon,
    start_webserver,
    wait_for_code_location,
)

pytestmark = [pytest.mark.slow, pytest.mark.dagster]

SCREENSHOTS = REPO_ROOT / "build" / "ui"
BROWSER_TIMEOUT_S = 120
# Virtual time lets the page's GraphQL round trips finish before the DOM is read or shot.
VIRTUAL_TIME_MS = 30000

ASSET_NODES_QUERY = """
{
  assetNodes {
    assetKey { path }
    isPartitioned
    partitionDefinition { description }
    assetChecksOrError { ... on AssetChecks { checks { name blocking } } }
  }
}
"""


@dataclass(frozen=True)
class UiServer:
    url: str
    home: Path
    workspace: Path
    env: dict[str, str]


def server_env(home: Path, tmp_path: Path) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DAGSTER_", "DCA_", "LAMASSU_"))
    }
    env.update(
        {
            "DAGSTER_HOME": str(home),
            "DCA_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.sqlite'}",
            "DCA_LAMASSU_SOURCE": "folder",
            "DCA_LAMASSU_FOLDER": str(copy_sample_lamassu(tmp_path / "lamassu")),
            # This module is about the UI and the servers; LNbits payouts are proven elsewhere.
            "DCA_PAYOUTS_DRY_RUN": "true",
        }
    )
    return env


def materialize_the_sample_week(env: dict[str, str], tmp_path: Path) -> None:
    """Fill the instance first, so the UI shows materialized partitions and evaluated checks."""
    seed_ledger(env["DCA_LEDGER_URL"], placeholder_wallets())
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dca_pipeline.demo.runner",
            "--first-day",
            SAMPLE_FIRST_DAY,
            "--last-day",
            SAMPLE_LAST_DAY,
        ],  # fmt: skip
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    tmp_path = tmp_path_factory.mktemp("ui")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = server_env(home, tmp_path)
    materialize_the_sample_week(env, tmp_path)
    grpc_port, web_port = free_loopback_port(), free_loopback_port()
    workspace = grpc_workspace_file(tmp_path / "workspace.yaml", grpc_port)
    url = f"http://127.0.0.1:{web_port}"
    code = start_code_server(grpc_port, env=env, log_path=tmp_path / "code_server.log")
    try:
        code.wait_for_port(grpc_port, timeout_s=LOAD_TIMEOUT_S, what="code server")
        with start_webserver(
            web_port, workspace, env=env, log_path=tmp_path / "webserver.log"
        ) as web:
            wait_for_code_location(url, web)
            dismiss_community_prompt(url)
            yield UiServer(url=url, home=home, workspace=workspace, env=env)
    finally:
        code.stop()


def chromium_binary() -> str:
    found = shutil.which("chromium")
    assert found, "Debian chromium is missing: run `bash scripts/bootstrap.sh`"
    return found


def chromium(url: str, profile: Path, *args: str) -> str:
    """Run headless Chromium once on ``url``; its stdout (the DOM with ``--dump-dom``)."""
    command = [
        chromium_binary(),
        "--headless",
        # Only our own loopback UI is loaded; the sandbox needs user namespaces (or a setuid
        # helper) that containers and root sessions often lack, so Chromium would not start.
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--window-size=1600,1000",
        f"--virtual-time-budget={VIRTUAL_TIME_MS}",
        *args,
        url,
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def rendered_text(dom: str) -> list[str]:
    """The visible text pieces of a DOM dump, in document order."""
    dom = re.sub(r"<(script|style)\b.*?</\1>", "", dom, flags=re.S | re.I)
    pieces = html.unescape(re.sub(r"<[^>]+>", "\n", dom)).splitlines()
    return [piece.strip() for piece in pieces if piece.strip()]


@dataclass(frozen=True)
class DefinedAsset:
    group: str
    partitioned: bool
    checks: frozenset[str]


def defined_graph() -> dict[str, DefinedAsset]:
    """From the code itself: every asset with its group, partitioning and check names."""
    from dca_pipeline.definitions import defs

    graph = defs().resolve_asset_graph()
    checks: dict[str, set[str]] = {}
    for check_key in graph.asset_check_keys:
        checks.setdefault(check_key.asset_key.to_user_string(), set()).add(check_key.name)
    return {
        key.to_user_string(): DefinedAsset(
            group=graph.get(key).group_name,
            partitioned=graph.get(key).partitions_def is not None,
            checks=frozenset(checks.get(key.to_user_string(), ())),
        )
        for key in graph.get_all_asset_keys()
    }


def test_the_served_graph_is_the_defined_graph(ui_server: UiServer) -> None:
    defined = defined_graph()
    nodes = graphql(ui_server.url, ASSET_NODES_QUERY)["assetNodes"]
    served = {"/".join(node["assetKey"]["path"]): node for node in nodes}

    assert set(served) == set(defined)
    for name, asset in defined.items():
        assert served[name]["isPartitioned"] is asset.partitioned, name
        served_checks = {c["name"] for c in served[name]["assetChecksOrError"].get("checks", [])}
        assert served_checks == asset.checks, name


def test_the_global_lineage_shows_every_group(ui_server: UiServer, tmp_path: Path) -> None:
    defined = defined_graph()
    assert defined, "the pipeline defines no asset yet"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = f"{ui_server.url}/asset-groups"
    screenshot = SCREENSHOTS / "asset_graph.png"
    screenshot.unlink(missing_ok=True)
    chromium(page, tmp_path / "profile-shot", f"--screenshot={screenshot}")
    assert screenshot.stat().st_size > 20_000  # a rendered page, not a blank one

    text = rendered_text(chromium(page, tmp_path / "profile-dom", "--dump-dom"))
    assert "Global asset lineage" in text
    # The UI refuses to lay out a graph with a cycle (e.g. two assets depending on each other's
    # previous partition) and shows this instead of the lineage.
    assert "Cycle detected" not in text, "the UI cannot draw the asset graph: it has a cycle"
    groups = {asset.group for asset in defined.values()}
    assert groups <= set(text), groups - set(text)


def test_each_group_graph_renders_its_assets_checks_and_partitions(
    ui_server: UiServer, tmp_path: Path
) -> None:
    """The group pages draw every node expanded: name, "Asset checks  n / m Passed" (the sample
    week was materialized, so every check was evaluated) and "<count> partitions"."""
    defined = defined_graph()
    groups = sorted({asset.group for asset in defined.values()})
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def render(group: str) -> list[str]:
        page = f"{ui_server.url}/locations/{LOCATION_NAME}/asset-groups/{quote(group)}"
        chromium(page, tmp_path / f"shot-{group}", f"--screenshot={SCREENSHOTS / f'{group}.png'}")
        return rendered_text(chromium(page, tmp_path / f"dom-{group}", "--dump-dom"))

    # Two browsers at once: each spends most of its time starting up and parsing the app.
    with ThreadPoolExecutor(max_workers=2) as pool:
        texts = dict(zip(groups, pool.map(render, groups), strict=True))
    for group, text in texts.items():
        members = {name: a for name, a in defined.items() if a.group == group}
        assert "Cycle detected" not in text, f"group {group}: the UI found a cycle"
        missing = sorted(name for name in members if name not in text)
        assert not missing, f"group {group}: assets not rendered: {missing}"
        # Each checked node shows "<passed> / <total> Passed"; all passed on the sample week.
        evaluated = [m for t in text if (m := re.fullmatch(r"(\d+) / (\d+) Passed", t))]
        totals = sorted(int(m[2]) for m in evaluated)
        assert totals == sorted(len(a.checks) for a in members.values() if a.checks), group
        assert all(m[1] == m[2] for m in evaluated), [m[0] for m in evaluated]
        # Each partitioned node shows its partition count, e.g. "695 partitions".
        partition_rows = [t for t in text if re.fullmatch(r"[\d,]+ partitions?", t)]
        assert len(partition_rows) == sum(a.partitioned for a in members.values()), group


def test_an_asset_lists_its_checks_by_name(ui_server: UiServer, tmp_path: Path) -> None:
    defined = defined_graph()
    asset = "client_balances" if "client_balances" in defined else min(defined)
    names = defined[asset].checks
    page = f"{ui_server.url}/assets/{quote(asset)}?view=checks"
    chromium(page, tmp_path / "shot", f"--screenshot={SCREENSHOTS / 'asset_checks.png'}")
    text = rendered_text(chromium(page, tmp_path / "dom", "--dump-dom"))
    assert f"Checks ({len(names)})" in text, text
    assert names <= set(text), names - set(text)


def test_the_partitioned_assets_use_the_business_day_calendar(ui_server: UiServer) -> None:
    from dca_pipeline.defs.settings import business_days

    nodes = graphql(ui_server.url, ASSET_NODES_QUERY)["assetNodes"]
    descriptions = {
        node["partitionDefinition"]["description"] for node in nodes if node["isPartitioned"]
    }
    # One partitioning for the whole pipeline: the business days of settings.py.
    assert descriptions == {str(business_days)}, descriptions


def test_the_runbook_launch_command_queues_a_payout_run_the_daemon_runs(
    ui_server: UiServer, tmp_path: Path
) -> None:
    """docs/runbook.md: `dagster job launch -w deploy/workspace.grpc.yaml -j payout_job` goes
    through the code server to the run queue; the daemon of deploy/systemd (same workspace)
    dequeues it and the code server runs it (payouts as a dry run here)."""
    before = {run["runId"] for run in payout_runs(ui_server)}  # the sample week's payout run
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "job",
            "launch",
            "-w",
            str(ui_server.workspace),
            "-j",
            "payout_job",
        ],  # fmt: skip
        cwd=REPO_ROOT,
        env=ui_server.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (queued,) = [run for run in payout_runs(ui_server) if run["runId"] not in before]
    assert queued["status"] == "QUEUED", queued
    assert {"key": "dca/payout", "value": "1"} in queued["tags"]

    daemon = start_daemon(ui_server.workspace, env=ui_server.env, log_path=tmp_path / "daemon.log")
    try:
        deadline = time.monotonic() + 180
        status = "QUEUED"
        while status not in ("SUCCESS", "FAILURE", "CANCELED") and time.monotonic() < deadline:
            assert daemon.running, daemon.log_tail()
            time.sleep(1)
            (run,) = [run for run in payout_runs(ui_server) if run["runId"] == queued["runId"]]
            status = run["status"]
        assert status == "SUCCESS", (status, daemon.log_tail())
    finally:
        daemon.stop()


def payout_runs(ui_server: UiServer) -> list[dict[str, object]]:
    return graphql(
        ui_server.url,
        '{ runsOrError(filter: {pipelineName: "payout_job"}) '
        "{ ... on Runs { results { runId status tags { key value } } } } }",
    )["runsOrError"]["results"]
