"""`dca-pipeline`: one console script, one subcommand module per area.

Each module in ``SUBCOMMAND_MODULES`` exposes ``register(subparsers)``, which adds its
subcommands and sets ``func`` (returning the exit status) on their parsers. Modules are imported
lazily, and each imports what a command needs when it runs, so that `simulate` and the admin
commands (`status`, `clients`, `deposits`, `commission`, `payouts`, `allocations issues`) import
neither Dagster nor pandas. A bad ``DCA_*`` setting is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from dca_pipeline.config import ConfigError

EXIT_BAD_SETTING = 2

SUBCOMMAND_MODULES = (
    "dca_pipeline.cli.simulate",
    "dca_pipeline.cli.admin",
    "dca_pipeline.cli.lamassu_fixture",
    "dca_pipeline.cli.demo",
    "dca_pipeline.cli.payouts",
    "dca_pipeline.cli.allocations",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dca-pipeline",
        description="Lamassu cash-outs → exact DCA allocations → LNbits payouts.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # an area not built yet; the others still work
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:  # names the variable; never a secret's value
        print(f"dca-pipeline: error: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTING


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
