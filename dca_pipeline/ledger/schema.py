"""The ledger: the system of record (SQLAlchemy Core; SQLite by default, PostgreSQL in production).

One ``metadata`` for every table, grouped by stage in the order money flows:

1. **admin** — clients (and their settings history), deposits, commission versions. Edited only
   through :mod:`dca_pipeline.cli.admin` / :mod:`dca_pipeline.ledger.admin`.
2. **landing** — Lamassu rows landed unchanged, validated cash-outs, quarantine (ingestion).
3. **allocation** — append-only allocation events and lines (what each person is owed).
4. **payouts** — one payout per recipient wallet per run, the lines it pays, LNbits evidence.

Invariants live in the database as well as in Python: keys, foreign keys, CHECKs, and (added by
the migrations) triggers that make the allocation ledger append-only. The Alembic migrations in
``ledger/migrations`` create exactly this schema; a test compares the two.
"""

from __future__ import annotations

import sqlalchemy as sa

from dca_pipeline.ledger.types import Money, SurrogateKey, UtcDateTime

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# --------------------------------------------------------------------------- 1. admin
clients = sa.Table(
    "clients",
    metadata,
    sa.Column("client_id", sa.Text, primary_key=True),
    sa.Column("display_name", sa.Text, nullable=True),
    sa.Column("lnbits_user_id", sa.Text, nullable=False),
    # Immutable once the client has a flow/fixed allocation line (ledger/admin.py + trigger 0100).
    sa.Column("wallet_id", sa.Text, nullable=False),
    # Secret: the payout creates invoices on the client's wallet with it. Never printed/logged.
    sa.Column("invoice_key", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.CheckConstraint("length(client_id) > 0", name="client_id_not_empty"),
    sa.CheckConstraint("length(wallet_id) > 0", name="wallet_id_not_empty"),
    sa.CheckConstraint("length(invoice_key) > 0", name="invoice_key_not_empty"),
)

#: Mode/status/limit history: each row holds from ``effective_at`` until the client's next row.
client_settings = sa.Table(
    "client_settings",
    metadata,
    sa.Column("change_id", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("client_id", sa.Text, sa.ForeignKey("clients.client_id"), nullable=False),
    sa.Column("effective_at", UtcDateTime, nullable=False),
    sa.Column("mode", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("daily_limit_cents", Money, nullable=True),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.Column("note", sa.Text, nullable=True),
    sa.UniqueConstraint("client_id", "effective_at"),
    sa.CheckConstraint("mode IN ('flow', 'fixed')", name="mode"),
    sa.CheckConstraint("status IN ('active', 'paused')", name="status"),
    sa.CheckConstraint(
        # NULL > 0 is NULL, which a CHECK accepts: hence the explicit IS NOT NULL.
        "(mode = 'fixed' AND daily_limit_cents IS NOT NULL AND daily_limit_cents > 0) OR "
        "(mode = 'flow' AND daily_limit_cents IS NULL)",
        name="fixed_needs_limit",
    ),
)

#: A confirmed deposit is never edited: a correction is a new ``kind='correction'`` row
#: (negative or positive) that names the deposit it corrects.
deposits = sa.Table(
    "deposits",
    metadata,
    sa.Column("deposit_id", sa.Text, primary_key=True),
    sa.Column("client_id", sa.Text, sa.ForeignKey("clients.client_id"), nullable=False),
    sa.Column("kind", sa.Text, nullable=False, server_default="deposit"),
    sa.Column("amount_cents", Money, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("confirmed_at", UtcDateTime, nullable=True),
    sa.Column(
        "corrects_deposit_id", sa.Text, sa.ForeignKey("deposits.deposit_id"), nullable=True
    ),
    sa.Column("note", sa.Text, nullable=True),
    sa.CheckConstraint("kind IN ('deposit', 'correction')", name="kind"),
    sa.CheckConstraint("status IN ('pending', 'confirmed')", name="status"),
    sa.CheckConstraint(
        "(status = 'confirmed') = (confirmed_at IS NOT NULL)", name="confirmed_has_time"
    ),
    sa.CheckConstraint(
        "(kind = 'deposit' AND amount_cents > 0 AND corrects_deposit_id IS NULL) OR "
        "(kind = 'correction' AND amount_cents <> 0 AND corrects_deposit_id IS NOT NULL)",
        name="amount_by_kind",
    ),
)

commission_versions = sa.Table(
    "commission_versions",
    metadata,
    sa.Column("version_id", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("effective_at", UtcDateTime, nullable=False, unique=True),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.Column("note", sa.Text, nullable=True),
)

commission_recipients = sa.Table(
    "commission_recipients",
    metadata,
    sa.Column(
        "version_id",
        SurrogateKey,
        sa.ForeignKey("commission_versions.version_id"),
        primary_key=True,
    ),
    sa.Column("recipient_id", sa.Text, primary_key=True),
    sa.Column("wallet_id", sa.Text, nullable=False),
    # Secret, like clients.invoice_key.
    sa.Column("invoice_key", sa.Text, nullable=False),
    sa.Column("basis_points", sa.Integer, nullable=False),
    sa.CheckConstraint("basis_points BETWEEN 1 AND 10000", name="basis_points_range"),
)

# --------------------------------------------------------------------------- 2. landing
#: Lamassu rows exactly as exported (every column, unknown ones too), latest version per id.
lamassu_raw_rows = sa.Table(
    "lamassu_raw_rows",
    metadata,
    sa.Column("source_table", sa.Text, primary_key=True),
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("created", UtcDateTime, nullable=True),
    sa.Column("business_day", sa.Date, nullable=True, index=True),
    sa.Column("row_json", sa.Text, nullable=False),
    sa.Column("row_sha256", sa.Text, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("first_seen_at", UtcDateTime, nullable=False),
    sa.Column("last_seen_at", UtcDateTime, nullable=False),
    sa.CheckConstraint(
        "source_table IN ('cash_out_txs', 'cash_out_actions', 'cash_in_txs')", name="source_table"
    ),
)

#: Every distinct version ever seen of a Lamassu row (append-only): nothing landed is lost.
lamassu_raw_revisions = sa.Table(
    "lamassu_raw_revisions",
    metadata,
    sa.Column("source_table", sa.Text, primary_key=True),
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("revision", sa.Integer, primary_key=True),
    sa.Column("row_json", sa.Text, nullable=False),
    sa.Column("row_sha256", sa.Text, nullable=False),
    sa.Column("seen_at", UtcDateTime, nullable=False),
)

#: One row per fetch whose rows landed (business-rules §4a "only landed data counts"), written in
#: the transaction that lands them: a failed fetch records nothing. ``[window_start,
#: window_end)`` is half-open over Lamassu ``created`` times: the requested window, its end
#: clipped to the instant the fetch started (a live fetch of today covers only up to then).
lamassu_fetches = sa.Table(
    "lamassu_fetches",
    metadata,
    sa.Column("fetch_id", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("window_start", UtcDateTime, nullable=False),
    sa.Column("window_end", UtcDateTime, nullable=False, index=True),
    sa.Column("landed_at", UtcDateTime, nullable=False),
    sa.Column("dagster_run_id", sa.Text, nullable=True),
    # Rows fetched in the window per Lamassu table (NULL when not recorded, e.g. seeding).
    sa.Column("cash_out_txs_rows", sa.Integer, nullable=True),
    sa.Column("cash_out_actions_rows", sa.Integer, nullable=True),
    sa.Column("cash_in_txs_rows", sa.Integer, nullable=True),
    sa.CheckConstraint("window_start < window_end", name="window_order"),
)

#: Parsed cash-outs (business-rules §2/§3); one row per Lamassu id, re-validated on every fetch.
validated_cash_outs = sa.Table(
    "validated_cash_outs",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("crypto_code", sa.Text, nullable=False),
    sa.Column("fiat_code", sa.Text, nullable=False),
    sa.Column("created", UtcDateTime, nullable=False),
    sa.Column("confirmed_at", UtcDateTime, nullable=True),
    sa.Column("dispense_at", UtcDateTime, nullable=True),
    sa.Column("event_time", UtcDateTime, nullable=False, index=True),
    sa.Column("business_day", sa.Date, nullable=False, index=True),
    sa.Column("fiat_cents", Money, nullable=False),
    sa.Column("crypto_atoms", Money, nullable=False),
    sa.Column("commission_percentage", sa.Text, nullable=True),
    sa.Column("discount", sa.Integer, nullable=True),
    sa.Column("principal_sats", Money, nullable=False),
    sa.Column("commission_sats", Money, nullable=False),
    sa.Column("raw_ticker_price", sa.Text, nullable=True),
    sa.Column("ticker_principal_sats", Money, nullable=True),
    sa.Column("ticker_deviation", sa.Boolean, nullable=False),
    sa.Column("dispense", sa.Boolean, nullable=False),
    sa.Column("dispense_confirmed", sa.Boolean, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("eligible", sa.Boolean, nullable=False),
    sa.Column("ineligible_reason", sa.Text, nullable=True),
    # Moves only when the validated content changes: what a live tick looks at (0510 index).
    sa.Column("validated_at", UtcDateTime, nullable=False, index=True),
    sa.CheckConstraint("principal_sats + commission_sats = crypto_atoms", name="sats_add_up"),
    sa.CheckConstraint("fiat_cents >= 0 AND crypto_atoms >= 0", name="non_negative"),
)

#: Rows that break the schema (§8): kept with the reason and the raw row, never dropped.
quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("quarantine_id", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("source_table", sa.Text, nullable=False),
    sa.Column("source_id", sa.Text, nullable=False),
    sa.Column("business_day", sa.Date, nullable=True, index=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("raw_row", sa.Text, nullable=False),
    sa.Column("row_sha256", sa.Text, nullable=False),
    sa.Column("first_seen_at", UtcDateTime, nullable=False),
    sa.Column("last_seen_at", UtcDateTime, nullable=False, index=True),
    # Resolved when a later version of the row validates (or an operator dismisses it).
    sa.Column("resolved_at", UtcDateTime, nullable=True),
    sa.UniqueConstraint("source_table", "source_id", "row_sha256"),
)

# --------------------------------------------------------------------------- 3. allocation
#: The ledger's sequence (business-rules §4a): one row per allocation event — a cash-out
#: allocation, a fixed run, a skipped fixed run, or a compensation — numbered 1, 2, 3 … without
#: gaps in the order the single allocation writer appended them. The state before event k is
#: the sum of the lines of the events numbered below k. ``source_id`` names the event: the
#: cash-out id for its first allocation, ``<id>~2``, ``<id>~3`` … for re-allocations,
#: ``fixed:YYYY-MM-DD`` for a day's fixed run (allocated or skipped), ``undo:<event>`` for the
#: compensation of an event.
allocation_events = sa.Table(
    "allocation_events",
    metadata,
    sa.Column("source_id", sa.Text, primary_key=True),
    sa.Column("seq", SurrogateKey, nullable=False, unique=True),
    sa.Column("source_kind", sa.Text, nullable=False),
    # The cash-out this event concerns (allocations and their compensations); NULL for fixed runs.
    sa.Column("cash_out_id", sa.Text, nullable=True, index=True),
    sa.Column("event_time", UtcDateTime, nullable=False),
    # 0 = cash-out (and compensation), 1 = fixed run: a cash-out and a fixed run at the same
    # instant sort cash-out first (§10). (event_time, event_rank, source_id) is the in-order key.
    sa.Column("event_rank", sa.Integer, nullable=False),
    # The instant balances, settings and deposits were taken at: the event time, or the latest
    # event time already allocated when the event arrived late (§4a).
    sa.Column("as_of", UtcDateTime, nullable=False, index=True),
    sa.Column("business_day", sa.Date, nullable=False, index=True),
    # Totals of the event's lines; negated for a compensation.
    sa.Column("fiat_cents", Money, nullable=False),
    sa.Column("principal_sats", Money, nullable=False),
    sa.Column("commission_sats", Money, nullable=False),
    # The cash-out's commission inputs as allocated (a later change of either is a "changed"
    # cash-out, §4a); NULL for fixed runs and for events allocated before revision 0500.
    sa.Column("commission_percentage", sa.Text, nullable=True),
    sa.Column("discount", sa.Integer, nullable=True),
    # The landed revision of the Lamassu row the allocation used (lamassu_raw_rows.revision).
    sa.Column("landed_revision", sa.Integer, nullable=True),
    sa.Column(
        "compensates_source_id",
        sa.Text,
        sa.ForeignKey("allocation_events.source_id"),
        nullable=True,
        unique=True,
    ),
    sa.Column("inputs_json", sa.Text, nullable=False),
    sa.Column("allocated_at", UtcDateTime, nullable=False, index=True),
    sa.Column("dagster_run_id", sa.Text, nullable=True),
    sa.CheckConstraint(
        "source_kind IN ('cash_out', 'fixed', 'fixed_skipped', 'compensation')",
        name="source_kind",
    ),
    sa.CheckConstraint(
        "(source_kind IN ('cash_out', 'compensation') AND event_rank = 0) OR "
        "(source_kind IN ('fixed', 'fixed_skipped') AND event_rank = 1)",
        name="rank_by_kind",
    ),
    sa.CheckConstraint(
        "(source_kind IN ('cash_out', 'compensation')) = (cash_out_id IS NOT NULL)",
        name="cash_out_by_kind",
    ),
    sa.CheckConstraint(
        "(source_kind = 'compensation') = (compensates_source_id IS NOT NULL)",
        name="compensation_names_its_event",
    ),
    sa.CheckConstraint("seq > 0", name="seq_positive"),
    sa.UniqueConstraint("event_time", "event_rank", "source_id"),
)

#: Append-only: a line is never updated or deleted; a correction is a new compensating line.
allocation_lines = sa.Table(
    "allocation_lines",
    metadata,
    sa.Column("line_id", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column(
        "source_id", sa.Text, sa.ForeignKey("allocation_events.source_id"), nullable=False
    ),
    sa.Column("line_no", sa.Integer, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    # client_id (flow/fixed) or commission recipient_id; NULL for unallocated.
    sa.Column("recipient_id", sa.Text, nullable=True),
    # The wallet this line is paid to, fixed when the line is written; NULL for unallocated.
    sa.Column("wallet_id", sa.Text, nullable=True),
    sa.Column("business_day", sa.Date, nullable=False, index=True),
    sa.Column("fiat_cents", Money, nullable=False),
    sa.Column("sats", Money, nullable=False),
    sa.Column(
        "compensates_line_id",
        SurrogateKey,
        sa.ForeignKey("allocation_lines.line_id"),
        nullable=True,
        # A line is reversed at most once.
        unique=True,
    ),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("source_id", "line_no"),
    sa.CheckConstraint(
        "kind IN ('flow', 'fixed', 'commission', 'unallocated')", name="kind"
    ),
    sa.CheckConstraint(
        "(kind = 'unallocated' AND recipient_id IS NULL AND wallet_id IS NULL) OR "
        "(kind <> 'unallocated' AND recipient_id IS NOT NULL AND wallet_id IS NOT NULL)",
        name="recipient_by_kind",
    ),
    sa.CheckConstraint(
        "compensates_line_id IS NOT NULL OR (fiat_cents >= 0 AND sats >= 0)",
        name="non_negative_unless_compensating",
    ),
)

#: Σ flow + fixed fiat allocated per client (and how many lines), kept by a trigger on
#: allocation_lines in the same transaction as the lines (migration 0510): live ticks read it
#: instead of re-adding the whole ledger; the check ``running_totals_match_lines`` re-adds.
client_allocated_totals = sa.Table(
    "client_allocated_totals",
    metadata,
    sa.Column("client_id", sa.Text, primary_key=True),
    sa.Column("allocated_cents", Money, nullable=False),
    sa.Column("allocated_sats", Money, nullable=False),
    sa.Column("lines", Money, nullable=False),
)

#: What allocation reported (§4a). ``mismatch``: a replay of the stored sequence differs from
#: the ledger (tampered or corrupt): a blocking check fails while one is open. The rest are
#: expected business, reported once each (WARN checks, an alert) and never a reason to stop:
#: ``late`` (appended after a later event), ``revoked`` / ``changed`` (compensated),
#: ``moved`` (its event time moved after allocation; the allocation stands), ``skipped`` (a
#: fixed run with no reference rate). Allocation lines are never rewritten because of one.
allocation_issues = sa.Table(
    "allocation_issues",
    metadata,
    sa.Column("issue_id", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("source_id", sa.Text, nullable=False, index=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("business_day", sa.Date, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("detected_at", UtcDateTime, nullable=False),
    sa.Column("dagster_run_id", sa.Text, nullable=True),
    # Closed when a later recomputation no longer finds it, or an operator acknowledges it.
    sa.Column("closed_at", UtcDateTime, nullable=True),
    sa.Column("resolution", sa.Text, nullable=True),
    sa.CheckConstraint(
        "kind IN ('mismatch', 'late', 'revoked', 'changed', 'moved', 'skipped')", name="kind"
    ),
    sa.CheckConstraint("(closed_at IS NULL) = (resolution IS NULL)", name="closed_has_resolution"),
)

# --------------------------------------------------------------------------- 4. payouts
#: One payout per recipient wallet per payout run, for the NET of the wallet's unclaimed lines
#: (compensations included); the id is deterministic from the wallet and its line ids.
payouts = sa.Table(
    "payouts",
    metadata,
    sa.Column("payout_id", sa.Text, primary_key=True),
    sa.Column("wallet_id", sa.Text, nullable=False, index=True),
    sa.Column("recipient_kind", sa.Text, nullable=False),
    sa.Column("recipient_id", sa.Text, nullable=False),
    sa.Column("sats", Money, nullable=False),
    sa.Column("fiat_cents", Money, nullable=False),
    sa.Column("memo", sa.Text, nullable=False),
    # planned → invoiced → in_flight (pay request sent, no definite answer yet) → paid;
    # failed (permanent until an operator retries it); void (its lines were compensated and
    # LNbits proved it unpaid: its lines went back to be netted, see payout_released_lines).
    # A dead invoice sends it back to planned (a fresh invoice). dry_run rows never move.
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("bolt11", sa.Text, nullable=True),
    sa.Column("payment_hash", sa.Text, nullable=True, unique=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("invoiced_at", UtcDateTime, nullable=True),
    sa.Column("settled_at", UtcDateTime, nullable=True),
    sa.Column("dagster_run_id", sa.Text, nullable=True),
    sa.CheckConstraint("recipient_kind IN ('client', 'commission')", name="recipient_kind"),
    sa.CheckConstraint(
        "status IN ('planned', 'invoiced', 'in_flight', 'paid', 'failed', 'void', 'dry_run')",
        name="status",
    ),
    sa.CheckConstraint("sats > 0", name="positive_sats"),
    sa.CheckConstraint(
        "status NOT IN ('invoiced', 'in_flight', 'paid') OR "
        "(bolt11 IS NOT NULL AND payment_hash IS NOT NULL)",
        name="invoice_before_pay",
    ),
)

#: Which lines a payout pays. A line is paid by at most one payout (primary key).
payout_lines = sa.Table(
    "payout_lines",
    metadata,
    sa.Column(
        "line_id", SurrogateKey, sa.ForeignKey("allocation_lines.line_id"), primary_key=True
    ),
    sa.Column("payout_id", sa.Text, sa.ForeignKey("payouts.payout_id"), nullable=False, index=True),
)

#: Every invoice ever made for a payout (a payout gets a new one when LNbits loses the old one,
#: e.g. on restart). Reconciliation asks LNbits about *all* of them before paying again.
payout_attempts = sa.Table(
    "payout_attempts",
    metadata,
    sa.Column("payout_id", sa.Text, sa.ForeignKey("payouts.payout_id"), primary_key=True),
    sa.Column("attempt_no", sa.Integer, primary_key=True),
    sa.Column("payment_hash", sa.Text, nullable=False, unique=True),
    sa.Column("bolt11", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # Written before the first pay request for this invoice is sent; NULL = never sent, so the
    # source wallet cannot have paid it. A sent invoice of a void payout must be dead first.
    sa.Column("pay_sent_at", UtcDateTime, nullable=True),
    # NULL while open; then paid | dead (LNbits lost/expired it, proven unpaid) | failed |
    # void (its payout was voided; never sent, or dead).
    sa.Column("outcome", sa.Text, nullable=True),
    sa.Column("outcome_detail", sa.Text, nullable=True),
    sa.Column("outcome_at", UtcDateTime, nullable=True),
    sa.CheckConstraint(
        "outcome IS NULL OR outcome IN ('paid', 'dead', 'failed', 'void')", name="outcome"
    ),
)

#: The lines a void payout had claimed. Voiding moves them here from payout_lines in one
#: transaction, so they are unclaimed again and net against the wallet's other lines.
payout_released_lines = sa.Table(
    "payout_released_lines",
    metadata,
    sa.Column("payout_id", sa.Text, sa.ForeignKey("payouts.payout_id"), primary_key=True),
    sa.Column(
        "line_id", SurrogateKey, sa.ForeignKey("allocation_lines.line_id"), primary_key=True
    ),
    sa.Column("released_at", UtcDateTime, nullable=False),
)

#: A wallet whose unclaimed lines net below zero (it was paid for lines compensated since):
#: the amount it owes, recovered from its next lines. One row while the debt lasts; the
#: operator is alerted once per distinct amount.
payout_wallet_debts = sa.Table(
    "payout_wallet_debts",
    metadata,
    sa.Column("wallet_id", sa.Text, primary_key=True),
    sa.Column("recipient_id", sa.Text, nullable=False),
    sa.Column("owed_sats", Money, nullable=False),
    sa.Column("owed_fiat_cents", Money, nullable=False),
    sa.Column("since", UtcDateTime, nullable=False),
    sa.Column("alerted_at", UtcDateTime, nullable=False),
    sa.CheckConstraint("owed_sats > 0", name="positive_debt"),
)

#: One payout writer at a time, on SQLite and PostgreSQL alike: a lease row taken with one
#: conditional UPDATE (atomic on both), renewed during the run, expiring if its holder dies.
payout_lease = sa.Table(
    "payout_lease",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("holder", sa.Text, nullable=True),
    sa.Column("acquired_at", UtcDateTime, nullable=True),
    sa.Column("expires_at", UtcDateTime, nullable=True),
)

#: The operator's pause switch (besides env DCA_PAYOUTS_PAUSED): stops payouts, not ingestion.
payout_control = sa.Table(
    "payout_control",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("paused", sa.Boolean, nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

#: What a dry run would pay. Kept apart from payouts/payout_lines on purpose: a dry run must not
#: claim lines, or they would never be paid.
payout_dry_runs = sa.Table(
    "payout_dry_runs",
    metadata,
    sa.Column("row_id", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("plan_id", sa.Text, nullable=False, index=True),
    # Set for a payout that already exists and is still unpaid; NULL for a would-be new one.
    sa.Column("payout_id", sa.Text, nullable=True),
    sa.Column("wallet_id", sa.Text, nullable=False),
    sa.Column("recipient_kind", sa.Text, nullable=False),
    sa.Column("recipient_id", sa.Text, nullable=False),
    sa.Column("sats", Money, nullable=False),
    sa.Column("fiat_cents", Money, nullable=False),
    sa.Column("line_count", sa.Integer, nullable=False),
    sa.Column("memo", sa.Text, nullable=False),
    # Could the source wallet cover the whole plan when it was made?
    sa.Column("funded", sa.Boolean, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("dagster_run_id", sa.Text, nullable=True),
)
