"""Appending live cash-outs to a folder source, as a Lamassu export would show them.

Used by the live-chain tests and the latency bench: both need "a dispensed cash-out just
happened" without a Lamassu database. Rows are copied from the bundled sample export (so every
column Lamassu sends is present) and only the fields that matter are replaced.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from pathlib import Path


def _sample_row(
    templates: Path, name: str, match: dict[str, str]
) -> tuple[list[str], dict[str, str]]:
    with (templates / name).open(newline="") as f:
        reader = csv.DictReader(f)
        row = next(r for r in reader if all(r[k] == v for k, v in match.items()))
        return list(reader.fieldnames or []), row


def append_dispensed_cash_out(folder: Path, *, templates: Path, at: datetime, index: int) -> str:
    """One dispensed, confirmed BTC cash-out of 100.00 GTQ at ``at``; returns its id.

    ``templates`` is a folder of Lamassu exports to copy the row shapes from (the sample's).
    """
    stamp = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
    tx_id = str(uuid.uuid4())
    tx_fields, tx = _sample_row(
        templates, "cash_out_txs.csv", {"status": "confirmed", "dispense": "t"}
    )
    tx.update(id=tx_id, fiat="100.00000", crypto_atoms=str(12_000 + index),
              received_crypto_atoms=str(12_000 + index), crypto_code="BTC", created=stamp,
              confirmed_at=stamp, published_at=stamp, dispense_confirmed="t", error="")  # fmt: skip
    action_fields, action = _sample_row(templates, "cash_out_actions.csv", {"action": "dispense"})
    action.update(id=str(900_000 + index), tx_id=tx_id, created=stamp, device_time="")
    # Actions first: a reader that sees the cash-out already sees its dispense time.
    for name, fields, row in (
        ("cash_out_actions.csv", action_fields, action),
        ("cash_out_txs.csv", tx_fields, tx),
    ):
        buffer = io.StringIO()
        csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n").writerow(row)
        with (folder / name).open("a") as f:
            f.write(buffer.getvalue())
    return tx_id
