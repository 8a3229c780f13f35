"""ledger/admin.py on SQLite and PostgreSQL: rules, history, balances, no partial writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dca_pipeline.ledger import admin
from dca_pipeline.ledger import schema as s
from dca_pipeline_tests.admin.conftest import (
    ALICE_KEY,
    ALLOCATED_AT,
    R1_KEY,
    SECRETS,
    T0,
    add_allocation,
    dump,
    seed,
)

LATER = ALLOCATED_AT + timedelta(days=1)


def _client(ledger, client_id: str = "carol", wallet: str = "w-carol", **kw):  # type: ignore[no-untyped-def]
    return admin.add_client(
        ledger,
        client_id=client_id,
        lnbits_user_id=f"u-{client_id}",
        wallet_id=wallet,
        invoice_key="carol-key-0123456789",
        **({"now": T0} | kw),
    )


def test_balances_follow_deposits_corrections_and_allocation_lines(ledger) -> None:  # type: ignore[no-untyped-def]
    seed(ledger)  # alice: 9000.00 − 10.00 confirmed, 100.00 pending, 1800.00 allocated
    add_allocation(
        ledger,
        source_id="co-2",
        at=ALLOCATED_AT + timedelta(hours=2),
        lines=(
            ("fixed", "alice", "w-alice", 10_000, 12_939),
            # Commission and unallocated lines never spend a client's balance, even when a
            # commission recipient id happens to equal a client id.
            ("commission", "alice", "w-alice", 0, 500),
            ("unallocated", None, None, 5_000, 6_000),
            ("flow", "bob", "w-bob", 0, 0),
        ),
    )
    alice, bob = admin.balances(ledger)
    assert alice == admin.Balance(
        client_id="alice",
        deposited_cents=900_000,
        corrections_cents=-1_000,
        pending_cents=10_000,
        allocated_cents=190_000,
        allocated_sats=232_916 + 12_939,
        remaining_cents=900_000 - 1_000 - 180_000 - 10_000,
    )
    assert bob.remaining_cents == 0 and bob.allocated_cents == 0
    # At an instant: only deposits confirmed and events allocated by then.
    (early,) = admin.balances(ledger, client_id="alice", at=T0 + timedelta(minutes=90))
    assert (early.deposited_cents, early.corrections_cents, early.allocated_cents) == (
        900_000,
        0,
        0,
    )
    (mid,) = admin.balances(ledger, client_id="alice", at=ALLOCATED_AT)
    assert mid.remaining_cents == 900_000 - 1_000 - 180_000
    summary = admin.status_summary(ledger)
    assert summary.allocated_cents == 190_000
    assert (summary.unallocated_cents, summary.unallocated_sats) == (5_000, 6_000)
    assert summary.commission_sats == 500 and summary.allocation_events == 2
    assert summary.remaining_cents == alice.remaining_cents + bob.remaining_cents
    assert summary.pending_deposits == 1 and summary.pending_cents == 10_000


def test_a_confirmed_deposit_is_never_edited_and_a_correction_compensates(ledger) -> None:  # type: ignore[no-untyped-def]
    _client(ledger)
    admin.add_deposit(ledger, client_id="carol", amount_cents=50_000, deposit_id="d", now=T0)
    with pytest.raises(admin.Refused, match="pending"):
        admin.correct_deposit(ledger, deposit_id="d", amount_cents=-100, note="x", now=T0)
    admin.confirm_deposit(ledger, deposit_id="d", now=T0 + timedelta(hours=1))
    before = dump(ledger)
    with pytest.raises(admin.Refused, match="already confirmed"):
        admin.confirm_deposit(ledger, deposit_id="d", now=T0 + timedelta(hours=2))
    with pytest.raises(admin.Refused, match="would become -0.01"):
        admin.correct_deposit(ledger, deposit_id="d", amount_cents=-50_001, note="x", now=T0)
    assert dump(ledger) == before
    fix = admin.correct_deposit(
        ledger,
        deposit_id="d",
        amount_cents=-20_000,
        note="miscounted",
        correction_id="d-fix",
        now=T0 + timedelta(hours=3),
    )
    assert (fix.kind, fix.status, fix.corrects_deposit_id, fix.amount_cents) == (
        "correction",
        "confirmed",
        "d",
        -20_000,
    )
    original = [d for d in admin.list_deposits(ledger) if d.deposit_id == "d"][0]
    assert original.amount_cents == 50_000  # untouched
    assert admin.balances(ledger, client_id="carol")[0].remaining_cents == 30_000
    with pytest.raises(admin.Refused, match="is a correction"):
        admin.correct_deposit(ledger, deposit_id="d-fix", amount_cents=100, note="x", now=T0)


def test_a_correction_cannot_make_a_balance_negative(seeded) -> None:  # type: ignore[no-untyped-def]
    remaining = admin.balances(seeded, client_id="alice")[0].remaining_cents  # 7190.00
    before = dump(seeded)
    with pytest.raises(admin.Refused, match="negative"):
        admin.correct_deposit(
            seeded, deposit_id="d1", amount_cents=-(remaining + 1), note="x", now=LATER
        )
    assert dump(seeded) == before
    admin.correct_deposit(seeded, deposit_id="d1", amount_cents=-remaining, note="x", now=LATER)
    assert admin.balances(seeded, client_id="alice")[0].remaining_cents == 0


def test_wallet_is_immutable_once_the_client_has_an_allocation_line(ledger) -> None:  # type: ignore[no-untyped-def]
    _client(ledger)
    admin.set_wallet(ledger, client_id="carol", wallet_id="w-carol-2", invoice_key="k" * 16)
    assert admin.get_client(ledger, client_id="carol").wallet_id == "w-carol-2"
    add_allocation(ledger, lines=(("flow", "carol", "w-carol-2", 100, 100),))
    before = dump(ledger)
    with pytest.raises(admin.Refused, match="allocation lines"):
        admin.set_wallet(ledger, client_id="carol", wallet_id="w-carol-3", invoice_key="k" * 16)
    assert dump(ledger) == before
    # Rotating the key of the same wallet stays possible.
    admin.set_wallet(ledger, client_id="carol", wallet_id="w-carol-2", invoice_key="n" * 16)
    assert admin.get_client(ledger, client_id="carol").has_allocations


def test_a_client_limit_above_the_system_maximum_is_refused(ledger, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("DCA_MAX_DAILY_GTQ", raising=False)
    with pytest.raises(admin.Refused, match="above the system maximum 2000.00"):
        _client(ledger, mode="fixed", daily_limit_cents=200_001)
    _client(ledger, mode="fixed", daily_limit_cents=200_000)
    with pytest.raises(admin.Refused, match="above the system maximum"):
        admin.set_limit(ledger, client_id="carol", daily_limit_cents=200_001, now=LATER)
    monkeypatch.setenv("DCA_MAX_DAILY_GTQ", "2500.00")
    admin.set_limit(ledger, client_id="carol", daily_limit_cents=250_000, now=LATER)
    with pytest.raises(admin.Refused, match="above the system maximum 1000.00"):
        admin.set_limit(
            ledger,
            client_id="carol",
            daily_limit_cents=100_001,
            max_daily_cents=100_000,
            now=LATER + timedelta(days=1),
        )


def test_settings_history_takes_effect_at_its_time(ledger) -> None:  # type: ignore[no-untyped-def]
    _client(ledger)
    pause_at = T0 + timedelta(days=10)
    admin.pause_client(ledger, client_id="carol", effective_at=pause_at, now=T0)
    admin.set_mode(
        ledger,
        client_id="carol",
        mode="fixed",
        daily_limit_cents=5_000,
        effective_at=pause_at + timedelta(days=1),
        now=T0,
    )
    before = admin.get_client(ledger, client_id="carol", at=pause_at - timedelta(seconds=1))
    assert (before.settings.status, before.next_change.effective_at) == ("active", pause_at)
    during = admin.get_client(ledger, client_id="carol", at=pause_at)
    assert (during.settings.mode, during.settings.status) == ("flow", "paused")
    after = admin.list_clients(ledger, at=pause_at + timedelta(days=2))[0]
    assert (after.settings.mode, after.settings.status, after.settings.daily_limit_cents) == (
        "fixed",
        "paused",
        5_000,
    )
    # A change slotted before an already scheduled one would be undone by it: refused.
    with pytest.raises(admin.Refused, match="must take effect after it"):
        admin.resume_client(ledger, client_id="carol", effective_at=pause_at, now=T0)
    _client(ledger, client_id="dave", wallet="w-dave")
    with pytest.raises(admin.Refused, match="flow mode"):
        admin.set_limit(ledger, client_id="dave", daily_limit_cents=1, now=T0 + timedelta(hours=1))
    assert len(admin.client_history(ledger, client_id="carol")) == 3


def test_nothing_may_take_effect_inside_allocated_history(seeded) -> None:  # type: ignore[no-untyped-def]
    before = dump(seeded)
    with pytest.raises(admin.Refused, match="allocated history"):
        admin.pause_client(seeded, client_id="alice", effective_at=ALLOCATED_AT, now=LATER)
    with pytest.raises(admin.Refused, match="allocated history"):
        admin.confirm_deposit(seeded, deposit_id="d2", confirmed_at=ALLOCATED_AT, now=LATER)
    with pytest.raises(admin.Refused, match="allocated history"):
        admin.set_commission(
            seeded,
            recipients=[admin.RecipientSpec("r1", "w-r1", 10_000, R1_KEY)],
            effective_at=ALLOCATED_AT - timedelta(days=1),
            now=LATER,
        )
    assert dump(seeded) == before
    admin.pause_client(
        seeded, client_id="alice", effective_at=ALLOCATED_AT + timedelta(seconds=1), now=LATER
    )


@pytest.mark.parametrize(
    ("recipients", "message"),
    [
        ([("r1", "w1", 7000), ("r2", "w2", 2999)], "sum to 9999"),
        ([("r1", "w1", 7000), ("r2", "w2", 3001)], "sum to 10001"),
        ([("r1", "w1", 7000), ("r1", "w2", 3000)], "unique"),
        ([("r1", "w1", 7000), ("r2", "w1", 3000)], "share a wallet"),
        ([("r1", "w1", 10_000), ("r2", "w2", 0)], "1..10000"),
        ([], "at least one"),
    ],
)
def test_commission_must_split_exactly_10000_basis_points(ledger, recipients, message) -> None:  # type: ignore[no-untyped-def]
    before = dump(ledger)
    specs = [admin.RecipientSpec(r, w, bp, "key-" + r * 8) for r, w, bp in recipients]
    with pytest.raises(admin.InvalidRequest, match=message):
        admin.set_commission(ledger, recipients=specs, now=T0)
    assert dump(ledger) == before


def test_commission_versions_take_effect_at_their_time(ledger) -> None:  # type: ignore[no-untyped-def]
    first = admin.set_commission(
        ledger, recipients=[admin.RecipientSpec("r1", "w1", 10_000, R1_KEY)], now=T0
    )
    switch = T0 + timedelta(days=30)
    second = admin.set_commission(
        ledger,
        recipients=[
            admin.RecipientSpec("r2", "w2", 2_500, R1_KEY),
            admin.RecipientSpec("r1", "w1", 7_500, R1_KEY),
        ],
        effective_at=switch,
        now=T0,
    )
    assert admin.get_commission(ledger, at=T0 - timedelta(seconds=1)) is None
    assert admin.get_commission(ledger, at=switch - timedelta(seconds=1)) == first
    assert admin.get_commission(ledger, at=switch) == second
    assert [r.recipient_id for r in second.recipients] == ["r1", "r2"]
    with pytest.raises(admin.Refused, match="must take effect after it"):
        admin.set_commission(
            ledger, recipients=[admin.RecipientSpec("r1", "w1", 10_000, R1_KEY)], now=T0
        )
    assert admin.commission_history(ledger) == [first, second]


def test_inputs_are_validated_before_anything_is_written(ledger) -> None:  # type: ignore[no-untyped-def]
    _client(ledger)
    before = dump(ledger)
    refusals = [
        (admin.AlreadyExists, lambda: _client(ledger)),
        (admin.AlreadyExists, lambda: _client(ledger, client_id="dave")),  # wallet taken
        (admin.InvalidRequest, lambda: _client(ledger, client_id="bad id")),
        (admin.InvalidRequest, lambda: _client(ledger, client_id="e", wallet="w-e", mode="x")),
        (admin.InvalidRequest, lambda: _client(ledger, client_id="e", wallet="w-e", mode="fixed")),
        (
            admin.InvalidRequest,
            lambda: _client(ledger, client_id="e", wallet="w-e", daily_limit_cents=100),
        ),
        (
            admin.InvalidRequest,
            lambda: _client(ledger, client_id="e", wallet="w-e", effective_at=datetime(2025, 1, 1)),
        ),
        (
            admin.InvalidRequest,
            lambda: admin.add_deposit(ledger, client_id="carol", amount_cents=0),
        ),
        (
            admin.InvalidRequest,
            lambda: admin.add_deposit(ledger, client_id="carol", amount_cents=True),
        ),
        (
            admin.InvalidRequest,
            lambda: admin.add_deposit(ledger, client_id="carol", amount_cents=1, currency="USD"),
        ),
        (admin.NotFound, lambda: admin.add_deposit(ledger, client_id="nobody", amount_cents=1)),
        (admin.NotFound, lambda: admin.confirm_deposit(ledger, deposit_id="nope")),
        (admin.NotFound, lambda: admin.pause_client(ledger, client_id="nobody")),
        (admin.Refused, lambda: admin.resume_client(ledger, client_id="carol")),
        (admin.Refused, lambda: admin.set_mode(ledger, client_id="carol", mode="flow")),
        (
            admin.InvalidRequest,
            lambda: admin.add_deposit(
                ledger,
                client_id="carol",
                amount_cents=1,
                confirm=True,
                confirmed_at=datetime.now(UTC) + timedelta(days=1),
            ),
        ),
    ]
    for error, call in refusals:
        with pytest.raises(error) as info:
            call()
        assert "\n" not in str(info.value)
    assert dump(ledger) == before


def test_parse_gtq_is_exact() -> None:
    assert admin.parse_gtq("2000") == 200_000
    assert admin.parse_gtq("0.01") == 1
    assert admin.parse_gtq("-5.5", allow_negative=True) == -550
    for bad in ("12.345", "1e3", "abc", "", "NaN", "1,000.00"):
        with pytest.raises(admin.InvalidRequest):
            admin.parse_gtq(bad)
    with pytest.raises(admin.InvalidRequest, match="positive"):
        admin.parse_gtq("-1")


def test_database_refusals_never_quote_the_row(ledger) -> None:  # type: ignore[no-untyped-def]
    # PostgreSQL's CHECK messages quote the failing row, invoice key included.
    with pytest.raises(admin.Refused) as info, admin._transaction(ledger) as c:
        c.execute(
            s.clients.insert().values(
                client_id="x",
                lnbits_user_id="u",
                wallet_id="",
                invoice_key=ALICE_KEY,
                created_at=T0,
            )
        )
    assert ALICE_KEY not in str(info.value) and "wallet_id_not_empty" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_a_caller_transaction_is_joined_and_a_refusal_rolls_back_only_its_own_part(ledger) -> None:  # type: ignore[no-untyped-def]
    with ledger.begin() as c:
        _client(c)
        with pytest.raises(admin.AlreadyExists):
            _client(c)
        admin.add_deposit(c, client_id="carol", amount_cents=100, deposit_id="dc", now=T0)
    assert [d.deposit_id for d in admin.list_deposits(ledger)] == ["dc"]


def test_results_carry_no_secret(seeded) -> None:  # type: ignore[no-untyped-def]
    results = [
        admin.list_clients(seeded),
        admin.get_client(seeded, client_id="alice"),
        admin.commission_history(seeded),
        admin.status_summary(seeded),
        admin.list_deposits(seeded),
    ]
    text = repr(results) + repr(admin.to_jsonable(results))
    text += repr(admin.RecipientSpec("r", "w", 1, R1_KEY))
    assert not [key for key in SECRETS if key in text]
