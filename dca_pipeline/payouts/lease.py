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

from dca_pipeline.ledger import payout_store as store

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

    def _expiry(self, now: datetime) -> datetime:
        return now + self._ttl

    def acquire(self) -> bool:
        """Take the lease if nobody (alive) holds it. Never waits."""
        with self._engine.begin() as c:
            store.ensure_lease_row(c, LEASE_NAME)
        now = _now()
        with self._engine.begin() as c:
            taken = store.take_free_lease(c, LEASE_NAME, self.holder, now, self._expiry(now))
        if taken:
            self._mark_held()
            return True
        with self._engine.connect() as c:
            current, _ = store.lease_holder(c, LEASE_NAME)
        if current and _local_holder_is_dead(current):
            now = _now()
            with self._engine.begin() as c:
                taken = store.take_lease_from(
                    c, LEASE_NAME, current, self.holder, now, self._expiry(now)
                )
            if taken:
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
            renewed = store.renew_lease(c, LEASE_NAME, self.holder, _now() + self._ttl)
        if not renewed:
            self.held = False
            raise LeaseLost("the payout lease was taken over by another writer")
        self._renewed_at = time.monotonic()

    def release(self) -> None:
        if not self.held:
            return
        with self._engine.begin() as c:
            store.release_lease(c, LEASE_NAME, self.holder)
        self.held = False


def current_holder(engine: sa.Engine) -> tuple[str | None, datetime | None]:
    """(holder, expires_at) of the lease, for status displays."""
    with engine.connect() as c:
        return store.lease_holder(c, LEASE_NAME)
