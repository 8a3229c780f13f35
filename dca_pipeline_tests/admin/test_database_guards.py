"""Revision 0100: the database itself keeps admin history, even against raw SQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from dca_pipeline.ledger import admin
from dca_pipeline_tests.admin.conftest import T0, add_allocation, dump


def _refused(ledger, statement: str, match: str) -> None:  # type: ignore[no-untyped-def]
    before = dump(ledger)
    with pytest.raises(sa.exc.DBAPIError, match=match), ledger.begin() as c:
        c.execute(sa.text(statement))
    assert dump(ledger) == before


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE deposits SET amount_cents = 1 WHERE deposit_id = 'd1'",
        "UPDATE deposits SET note = 'edited' WHERE deposit_id = 'd1-c1'",
        "DELETE FROM deposits WHERE deposit_id = 'd1-c1'",
    ],
)
def test_a_confirmed_deposit_cannot_be_edited_or_deleted(seeded, statement: str) -> None:  # type: ignore[no-untyped-def]
    _refused(seeded, statement, "confirmed deposit is never edited")


def test_a_pending_deposit_is_still_an_ordinary_row(seeded) -> None:  # type: ignore[no-untyped-def]
    with seeded.begin() as c:
        c.execute(sa.text("UPDATE deposits SET note = 'cash at branch 2' WHERE deposit_id = 'd2'"))
        c.execute(sa.text("DELETE FROM deposits WHERE deposit_id = 'd2'"))
    assert "d2" not in {d.deposit_id for d in admin.list_deposits(seeded)}


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE client_settings SET status = 'paused'",
        "DELETE FROM client_settings",
        "UPDATE commission_recipients SET basis_points = 5000",
        "DELETE FROM commission_recipients",
        "UPDATE commission_versions SET note = 'x'",
    ],
)
def test_settings_and_commission_history_is_append_only(seeded, statement: str) -> None:  # type: ignore[no-untyped-def]
    _refused(seeded, statement, "append-only")


def test_the_wallet_of_a_client_with_allocation_lines_cannot_change(seeded) -> None:  # type: ignore[no-untyped-def]
    # bob has no line yet: the database lets his wallet change (admin.py refuses only after).
    with seeded.begin() as c:
        c.execute(sa.text("UPDATE clients SET wallet_id = 'w-bob-2' WHERE client_id = 'bob'"))
    _refused(
        seeded,
        "UPDATE clients SET wallet_id = 'w-alice-2' WHERE client_id = 'alice'",
        "immutable once the client has allocation lines",
    )
    # A commission line naming a client id does not freeze that client's wallet.
    add_allocation(
        seeded,
        source_id="co-9",
        at=T0.replace(year=2025, month=7),
        lines=(("commission", "bob", "w-r1", 0, 10),),
    )
    with seeded.begin() as c:
        c.execute(sa.text("UPDATE clients SET wallet_id = 'w-bob-3' WHERE client_id = 'bob'"))
        # Key rotation on a frozen wallet stays possible.
        c.execute(
            sa.text("UPDATE clients SET invoice_key = 'rotated-key-123' WHERE client_id = 'alice'")
        )


def test_database_errors_reach_the_admin_as_one_line_without_parameters(seeded) -> None:  # type: ignore[no-untyped-def]
    secret = "a-brand-new-secret-key-0000"
    update = sa.text(
        "UPDATE clients SET wallet_id = 'w-x', invoice_key = :k WHERE client_id = 'alice'"
    )
    refused = pytest.raises(admin.Refused, match="immutable once the client has allocation")
    with refused as info, admin._transaction(seeded) as c:
        c.execute(update, {"k": secret})
    assert secret not in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(admin.LedgerUnavailable) as failed, admin._transaction(seeded) as c:
        c.execute(sa.text("SELECT no_such_column, :k FROM clients"), {"k": secret})
    assert secret not in str(failed.value) and failed.value.__suppress_context__
