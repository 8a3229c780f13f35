"""Admin CLI start-up: ``dca-pipeline status --json``, wall time of a whole process.

    .venv/bin/python -m bench.cli_startup [--runs 5] [--clients 20]

Each command runs ``--runs`` times as a fresh subprocess (after one untimed warm-up) against the
same seeded SQLite ledger (``--clients`` clients with a confirmed deposit each, a commission
split), and the median wall time is reported, with the median CPU time (user + system) of the
process, which a busy machine disturbs less. Baselines measured in the same run:

- ``python -c pass``: the interpreter alone, the floor;
- the old path: the same ``status --json`` after importing what it imported before issue 13
  (the ledger's Dagster resource module, which pulled in Dagster and the SSH source's paramiko,
  and Alembic, which ran on every open);
- ``import dca_pipeline.definitions``: what any command importing the code location pays.

The goal (issue 13) is a median of at most 0.4 s for ``status --json``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

GOAL_SECONDS = 0.4  # float-ok: seconds
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def seed(url: str, clients: int) -> None:
    from dca_pipeline.ledger import admin
    from dca_pipeline.ledger.database import open_ledger

    engine = open_ledger(url)
    for i in range(clients):
        client = f"client-{i:03d}"
        admin.add_client(engine, client_id=client, lnbits_user_id=f"u-{i}",
                         wallet_id=f"w-{i}", invoice_key=f"invoice-key-{i:020d}",
                         effective_at=T0, now=T0)
        admin.add_deposit(engine, client_id=client, amount_cents=100_000 * (i + 1),
                          confirm=True, confirmed_at=T0, now=T0)
    admin.set_commission(
        engine,
        recipients=[admin.RecipientSpec("operator", "w-op", 10_000, "invoice-key-operator-00")],
        effective_at=T0, now=T0,
    )
    engine.dispose()


def _children_cpu() -> float:  # float-ok: seconds
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median_seconds(argv: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    """(median wall time, median CPU time) of ``runs`` fresh processes."""
    subprocess.run(argv, env=env, check=True, capture_output=True)  # warm-up (page cache)
    walls, cpus = [], []
    for _ in range(runs):
        cpu, started = _children_cpu(), time.perf_counter()
        subprocess.run(argv, env=env, check=True, capture_output=True)
        walls.append(time.perf_counter() - started)
        cpus.append(_children_cpu() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cli_startup")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clients", type=int, default=20)
    args = parser.parse_args(argv)

    python = sys.executable
    script = Path(python).with_name("dca-pipeline")
    status = [str(script)] if script.exists() else [python, "-m", "dca_pipeline.cli"]
    with tempfile.TemporaryDirectory(prefix="dca-cli-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'ledger.sqlite'}"
        seed(url, args.clients)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DCA_")}
        env |= {"DCA_LEDGER_URL": url, "DAGSTER_HOME": tmp}
        old_path = (
            "import dca_pipeline.ledger.resource, alembic.command\n"
            "from dca_pipeline.cli import main\n"
            "main(['status', '--json'])"
        )
        commands = {
            "python -c pass": [python, "-c", "pass"],
            "dca-pipeline status --json": [*status, "status", "--json"],
            "old path: + Dagster resource, Alembic": [python, "-c", old_path],
            "import dca_pipeline.definitions": [python, "-c", "import dca_pipeline.definitions"],
        }
        medians = {name: median_seconds(cmd, env, args.runs) for name, cmd in commands.items()}

    print(f"median of {args.runs} runs, {args.clients} clients, SQLite ledger; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"  {'command':<40} {'wall':>9} {'cpu':>9}")
    for name, (wall, cpu) in medians.items():
        print(f"  {name:<40} {wall:7.3f} s {cpu:7.3f} s")
    now, cpu_now = medians["dca-pipeline status --json"]
    floor = medians["python -c pass"][0]
    old, cpu_old = medians["old path: + Dagster resource, Alembic"]
    print(f"status / old path: wall {now / old:.2f} ({old / now:.1f}x faster), "
          f"cpu {cpu_now / cpu_old:.2f}; status - interpreter: {now - floor:.3f} s")
    verdict = "met" if now <= GOAL_SECONDS else "NOT met"
    print(f"goal status --json <= {GOAL_SECONDS} s median wall: {verdict} ({now:.3f} s)")
    return 0 if now <= GOAL_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
