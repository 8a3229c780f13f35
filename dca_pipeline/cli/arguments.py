"""argparse value types shared by the subcommands."""

from __future__ import annotations

import argparse
from datetime import date


def iso_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc
