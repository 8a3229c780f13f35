"""`dca-pipeline demo`: the whole pipeline on the embedded default, then the Dagster UI.

Everything lives under ``--workdir`` (default ``.dca/demo``), which is recreated on every run:

- ``dagster_home/``: the Dagster instance (the repository's root ``dagster.yaml``: SQLite);
- ``ledger.sqlite``: the ledger, seeded through the admin API with the sample's clients,
  deposits and commission split (``data/sample/``);
- ``lamassu/``: the folder source, filled with the bundled Lamassu export of 2025-06-01..07;
- ``lnbits/``: a real LNbits (FakeWallet) on loopback with one wallet per client/recipient and a
  funded source wallet, when ``.lnbits-venv`` exists; otherwise payouts are an explicit DRY RUN.

The demo materializes the sample week as one run (a single-run backfill), runs the payout job
and the reports, prints a summary, and then starts ``dagster dev`` on 127.0.0.1 (Ctrl-C stops
everything). ``--once`` stops after the summary and exits non-zero if any check or run failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

MARKER = ".dca-demo"
DEFAULT_WORKDIR = ".dca/demo"
DEMO_TIMEZONE = "America/Guatemala"
BANNER_WIDTH = 78


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole pipeline on the sample data (embedded default), then open the UI",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="headless: run the pipeline, print the summary, exit (non-zero if a check failed)",
    )
    parser.add_argument(
        "--workdir",
        default=DEFAULT_WORKDIR,
        help=f"demo state folder, recreated on every run (default {DEFAULT_WORKDIR})",
    )
    parser.add_argument(
        "--port", type=int, default=3000, help="UI port on 127.0.0.1 (default 3000)"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="do not start LNbits even if .lnbits-venv exists; payouts are planned, not paid",
    )
    parser.set_defaults(func=run)


def say(text: str = "") -> None:
    print(text, flush=True)


def banner(*lines: str) -> None:
    say("!" * BANNER_WIDTH)
    for line in lines:
        say(f"!!  {line}")
    say("!" * BANNER_WIDTH)


def prepare_workdir(workdir: Path) -> None:
    """Recreate ``workdir``; refuse to wipe a folder the demo did not create."""
    if workdir.exists():
        if not (workdir / MARKER).exists() and any(workdir.iterdir()):
            raise SystemExit(
                f"dca-pipeline demo: {workdir} exists and is not a demo folder; "
                "choose another --workdir"
            )
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / MARKER).write_text("created by `dca-pipeline demo`; deleted by its next run\n")


def demo_environment(workdir: Path) -> dict[str, str]:
    from dca_pipeline.demo.seed import SAMPLE_FIRST_DAY

    return {
        "DAGSTER_HOME": str(workdir / "dagster_home"),
        "DCA_LEDGER_URL": f"sqlite:///{workdir / 'ledger.sqlite'}",
        "DCA_LAMASSU_SOURCE": "folder",
        "DCA_LAMASSU_FOLDER": str(workdir / "lamassu"),
        "DCA_START_DATE": SAMPLE_FIRST_DAY,
        "DCA_TIMEZONE": DEMO_TIMEZONE,
    }


def print_summary(outcomes: list[Any], ledger_url: str, lnbits: Any | None, dry_run: bool) -> None:
    from dca_pipeline.domain.money import format_cents
    from dca_pipeline.ledger import admin

    say("\n=== Dagster runs")
    for o in outcomes:
        if o.skipped_reason:
            say(f"- {o.stage}: SKIPPED ({o.skipped_reason})")
            continue
        state = "SUCCESS" if o.success else "FAILURE"
        say(f"- {o.stage}: {state}  run {o.run_id}")
        for asset, count in sorted(o.materializations.items()):
            say(f"    materialized {asset} ({count} partition{'s' if count != 1 else ''})")
        for step in o.failed_steps:
            say(f"    failed step: {step}")
    checks = [c for o in outcomes for c in o.checks]
    passed = sum(c.passed for c in checks)
    say(f"\n=== Asset checks: {passed} passed, {len(checks) - passed} failed")
    for c in sorted(checks, key=lambda c: (c.passed, c.asset, c.check)):
        mark = "ok  " if c.passed else "FAIL"
        detail = f" - {c.description}" if c.description and not c.passed else ""
        say(f"  {mark} {c.asset}.{c.check} [{c.severity}]{detail}")

    status = admin.status_summary(ledger_url)
    say("\n=== Allocations (ledger)")
    say(f"  allocation events: {status.allocation_events}")
    say(
        f"  allocated to clients: {format_cents(status.allocated_cents)} GTQ = "
        f"{status.allocated_sats} sats"
    )
    say(f"  commission: {status.commission_sats} sats")
    say(
        f"  unallocated (stays in the source wallet): {format_cents(status.unallocated_cents)} "
        f"GTQ = {status.unallocated_sats} sats"
    )
    say("  client            deposited     allocated   alloc. sats     remaining")
    for b in status.balances:
        say(
            f"  {b.client_id:<12} {format_cents(b.deposited_cents):>14} "
            f"{format_cents(b.allocated_cents):>13} {b.allocated_sats:>13} "
            f"{format_cents(b.remaining_cents):>13}"
        )
    say("\n=== Payouts")
    payouts = payout_rows(ledger_url, dry_run)
    for recipient, kind, sats, payout_status in payouts:
        say(f"  {recipient:<12} {kind:<10} {sats:>12} sats  {payout_status}")
    if not payouts:
        say("  none recorded")
    if dry_run:
        say("  DRY RUN: the plan above was recorded (payout_dry_runs); NOTHING WAS PAID.")
    if lnbits is not None:
        say("  LNbits balances (sats):")
        for party, sats in lnbits.balances_sats().items():
            say(f"    {party:<12} {sats:>12}")


def payout_rows(ledger_url: str, dry_run: bool) -> list[tuple[str, str, int, str]]:
    """(recipient, kind, sats, status) of every payout, or of the latest dry-run plan."""
    from dca_pipeline.ledger import payout_store
    from dca_pipeline.ledger.database import open_ledger

    with open_ledger(ledger_url).connect() as c:
        if dry_run:
            return [
                (recipient, kind, sats, "planned (dry run)")
                for recipient, kind, sats in payout_store.latest_dry_run_rows(c)
            ]
        return payout_store.payout_listing(c)


def run(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir).resolve()
    from dca_pipeline.demo.processes import port_is_free

    if not args.once and not port_is_free(args.port):
        say(f"dca-pipeline demo: 127.0.0.1:{args.port} is in use; pass --port")
        return 2
    prepare_workdir(workdir)
    env = demo_environment(workdir)
    # The Dagster definitions read their settings when first imported: set them first.
    os.environ.update(env)
    from dca_pipeline.config import config

    ledger_url = config().resolved_ledger_url()  # a bad inherited DCA_* value stops here

    from dca_pipeline.demo import seed, servers, wallets

    home = Path(env["DAGSTER_HOME"])
    home.mkdir()
    shutil.copyfile(servers.REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    seed.copy_sample_lamassu(Path(env["DCA_LAMASSU_FOLDER"]))

    lnbits = None
    dry_run = args.dry_run or not wallets.lnbits_available()
    if dry_run:
        reason = "--dry-run given" if args.dry_run else ".lnbits-venv not found"
        banner(
            f"DRY RUN ({reason}): payouts are planned and recorded, NOTHING IS PAID.",
            "Run `bash scripts/bootstrap.sh` to build .lnbits-venv for real LNbits payouts.",
        )
        env["DCA_PAYOUTS_DRY_RUN"] = "true"
        party_wallets = seed.placeholder_wallets()
    else:
        say(f"Starting LNbits (FakeWallet) under {workdir / 'lnbits'} ...")
        lnbits = wallets.start_demo_lnbits(workdir / "lnbits")
        say(
            f"LNbits on {lnbits.server.url}: {len(lnbits.wallets)} wallets, source funded "
            f"with {lnbits.funded_sats} sats"
        )
        env.update(lnbits.environment())
        party_wallets = lnbits.demo_wallets()
    os.environ.update(env)

    try:
        counts = seed.seed_ledger(ledger_url, party_wallets)
        say(
            f"Ledger {ledger_url}: {counts['clients']} clients, "
            f"{counts['deposits']} confirmed + {counts['pending_deposits']} pending deposits, "
            f"{counts['recipients']} commission recipients"
        )
        status = run_once(env, lnbits, dry_run)
        if args.once:
            return status
        return serve_ui(args.port, env)
    finally:
        if lnbits is not None:
            lnbits.stop()


def run_once(env: dict[str, str], lnbits: Any | None, dry_run: bool) -> int:
    import dagster as dg

    from dca_pipeline.config import config
    from dca_pipeline.definitions import defs
    from dca_pipeline.demo.runner import run_pipeline
    from dca_pipeline.demo.seed import SAMPLE_FIRST_DAY, SAMPLE_LAST_DAY

    say(f"Materializing {SAMPLE_FIRST_DAY}..{SAMPLE_LAST_DAY} as one run ...")
    started = time.monotonic()
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        outcomes = run_pipeline(
            defs(), instance, first_day=SAMPLE_FIRST_DAY, last_day=SAMPLE_LAST_DAY
        )
    print_summary(outcomes, config().resolved_ledger_url(), lnbits, dry_run)
    failed_runs = [o.stage for o in outcomes if not o.success and not o.skipped_reason]
    skipped = [o.stage for o in outcomes if o.skipped_reason]
    failed_checks = [c for o in outcomes for c in o.failed_checks]
    say(f"\nDone in {time.monotonic() - started:.1f} s.")
    if failed_checks or failed_runs or skipped:
        say(
            f"FAILED: {len(failed_checks)} check(s); failed run(s): "
            f"{', '.join(failed_runs) or '-'}; skipped: {', '.join(skipped) or '-'}"
        )
        return 1
    return 0


def serve_ui(port: int, env: dict[str, str]) -> int:
    from dca_pipeline.demo import servers

    server_env = {**os.environ, **env}
    dev = servers.start_dagster_dev(port, env=server_env, log_path=None)
    url = f"http://127.0.0.1:{port}"
    try:
        servers.wait_for_code_location(url, dev)
        servers.dismiss_community_prompt(url)
        say(f"\nDagster UI: {url}/asset-groups   (Ctrl-C stops the UI, the daemon and LNbits)")
        say(f"(dagster dev: process group {dev.pid})")
        while dev.running:
            time.sleep(0.5)
        say(f"dagster dev exited with status {dev.process.returncode}")
        return 1
    except KeyboardInterrupt:
        say("\nStopping ...")
        return 0
    finally:
        dev.stop()


if __name__ == "__main__":  # pragma: no cover
    from dca_pipeline.cli import main

    sys.exit(main(["demo", *sys.argv[1:]]))
