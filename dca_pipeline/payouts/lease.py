"""One payout writer at a time, enforced by the ledger database itself (SQLite and PostgreSQL).

The lease is one row of ``payout_lease``. Taking it is a single conditional ``UPDATE`` (free, or
expired, or held by a process of this host that no longer exists), which both databases execute
atomically: SQLite serializes writers, and PostgreSQL re-checks the ``WHERE`` of a row another
transaction just updated. The holder renews it before every payment; a holder that died
(SIGKILL, power loss) stops renewing, so the lease expires and the next run can proceed.

Why not an advisory lock: it is PostgreSQL-only and dies with the session, so a pooled
connection would have to stay checked out for the whole run; the lease row works on both
databases and also tells the operator who holds it and since when.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from dca_pipeline.ledger import schema as s

LEASE_NAME = "payouts"
DEFAULT_LEASE_SECONDS = 300


class LeaseLost(RuntimeError):
    """Another writer took the lease (ours expired): stop before touching money."""


def _now() -> datetime:
    return datetime.now(UTC)


def _holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _local_holder_is_dead(holder: str) -> bool:
    """True only for a holder on *this* host whose process is gone (safe to take over)."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # another run in this very process (a thread): alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class PayoutLease:
    """``acquire()`` / ``renew()`` / ``release()`` of the single payout-writer lease."""

    def __init__(self, engine: sa.Engine, seconds: int = DEFAULT_LEASE_SECONDS) -> None:
        if seconds <= 0:
            raise ValueError("lease seconds must be positive")
        self._engine = engine
        self._ttl = timedelta(seconds=seconds)
        self.holder = _holder_id()
        self.held = False
        self._renewed_at = 0.0  # float-ok: monotonic seconds, not money

    def _ensure_row(self) -> None:
        # The migration inserts it; recreate it if an operator deleted it.
        with self._engine.begin() as c:
            exists = c.execute(
                sa.select(s.payout_lease.c.name).where(s.payout_lease.c.name == LEASE_NAME)
            ).first()
            if exists is None:
                c.execute(s.payout_lease.insert().values(name=LEASE_NAME))

    def _take(self, condition: sa.ColumnElement[bool]) -> bool:
        now = _now()
        with self._engine.begin() as c:
            result = c.execute(
                s.payout_lease.update()
                .where(s.payout_lease.c.name == LEASE_NAME, condition)
                .values(holder=self.holder, acquired_at=now, expires_at=now + self._ttl)
            )
        return result.rowcount == 1

    def acquire(self) -> bool:
        """Take the lease if nobody (alive) holds it. Never waits."""
        self._ensure_row()
        lease = s.payout_lease.c
        now = _now()
        if self._take(sa.or_(lease.holder.is_(None), lease.expires_at < now)):
            self._mark_held()
            return True
        with self._engine.connect() as c:
            current = c.execute(
                sa.select(lease.holder).where(lease.name == LEASE_NAME)
            ).scalar_one_or_none()
        if current and _local_holder_is_dead(current) and self._take(lease.holder == current):
            self._mark_held()
            return True
        return False

    def _mark_held(self) -> None:
        self.held = True
        self._renewed_at = time.monotonic()

    def ensure_held(self) -> None:
        """Before each payment: renew once a tenth of the lease has passed (one write, not one
        per payment). Between renewals the lease cannot expire, so it is still ours."""
        if not self.held:
            raise LeaseLost("the payout lease is not held")
        if time.monotonic() - self._renewed_at >= self._ttl.total_seconds() / 10:
            self.renew()

    def renew(self) -> None:
        """Extend the lease; raise :class:`LeaseLost` if it is no longer ours."""
        with self._engine.begin() as c:
            result = c.execute(
                s.payout_lease.update()
                .where(s.payout_lease.c.name == LEASE_NAME, s.payout_lease.c.holder == self.holder)
                .values(expires_at=_now() + self._ttl)
            )
        if result.rowcount != 1:
            self.held = False
            raise LeaseLost("the payout lease was taken over by another writer")
        self._renewed_at = time.monotonic()

    def release(self) -> None:
        if not self.held:
            return
        with self._engine.begin() as c:
            c.execute(
                s.payout_lease.update()
                .where(s.payout_lease.c.name == LEASE_NAME, s.payout_lease.c.holder == self.holder)
                .values(holder=None, acquired_at=None, expires_at=None)
            )
        self.held = False


def current_holder(engine: sa.Engine) -> tuple[str | None, datetime | None]:
    """(holder, expires_at) of the lease, for status displays."""
    with engine.connect() as c:
        row = c.execute(
            sa.select(s.payout_lease.c.holder, s.payout_lease.c.expires_at).where(
                s.payout_lease.c.name == LEASE_NAME
            )
        ).first()
    return (row.holder, row.expires_at) if row else (None, None)
