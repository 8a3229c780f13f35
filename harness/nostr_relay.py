"""A real Nostr relay on loopback for tests and the demo, plus a reader for NIP-17 DMs.

The relay is ``nostr-relay`` from PyPI (a complete Python relay: websockets, SQLite storage,
signature checks). It lives in its own virtualenv so its server dependencies (gunicorn,
aiohttp, ...) stay out of the project's environment::

    uv venv -p python3.11 .nostr-relay-venv && uv pip install -p .nostr-relay-venv/bin/python \
        nostr-relay==1.14

The executable is taken from ``$DCA_NOSTR_RELAY_BIN`` or ``<repo>/.nostr-relay-venv/bin/
nostr-relay``. Each relay gets a free port on 127.0.0.1, its own config and SQLite file under
the given directory, runs in its own session and is stopped by its process-group id
(:class:`~dca_pipeline.demo.processes.ManagedProcess`).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx

from dca_pipeline.demo.processes import (
    ManagedProcess,
    ProcessError,
    free_loopback_port,
)

NOSTR_RELAY_BIN_ENV = "DCA_NOSTR_RELAY_BIN"
REPO_ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP_HINT = (
    "uv venv -p python3.11 .nostr-relay-venv && "
    "uv pip install -p .nostr-relay-venv/bin/python nostr-relay==1.14"
)
_STARTUP_TIMEOUT_S = 30.0  # float-ok: seconds
_STOP_TIMEOUT_S = 10.0  # float-ok: seconds

_CONFIG_TEMPLATE = """\
DEBUG: false
relay_name: dca-pipeline test relay
relay_description: loopback relay for tests
storage:
  sqlalchemy.url: sqlite+aiosqlite:///{db_path}
  num_concurrent_reqs: 4
  num_concurrent_adds: 1
  validators:
    - nostr_relay.validators.is_not_too_large
    - nostr_relay.validators.is_signed
    - nostr_relay.validators.is_recent
verification:
  nip05_verification: disabled
gunicorn:
  bind: 127.0.0.1:{port}
  workers: 1
  loglevel: warning
  reload: false
  graceful_timeout: 1
authentication:
  enabled: false
message_timeout: 600
subscription_limit: 32
max_limit: 1000
# NIP-17 gift wraps are back-dated by up to two days on purpose; accept a week.
oldest_event: 604800
"""


def relay_executable() -> Path:
    configured = os.environ.get(NOSTR_RELAY_BIN_ENV)
    return Path(configured) if configured else REPO_ROOT / ".nostr-relay-venv/bin/nostr-relay"


class LocalNostrRelay:
    """One ``nostr-relay`` server process bound to 127.0.0.1."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self._process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def log_path(self) -> Path:
        return self.workdir / "relay.log"

    def start(self) -> LocalNostrRelay:
        executable = relay_executable()
        if not executable.exists():
            raise RuntimeError(
                f"nostr-relay not found at {executable}; bootstrap it with: {BOOTSTRAP_HINT} "
                f"(or set {NOSTR_RELAY_BIN_ENV})"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The free-port probe can race with another process; try a few ports.
        for _ in range(3):
            self.port = free_loopback_port()
            config_path = self.workdir / "config.yaml"
            config_path.write_text(
                _CONFIG_TEMPLATE.format(db_path=self.workdir / "relay.sqlite3", port=self.port)
            )
            # gunicorn master + worker share the session: SIGTERM the whole group (graceful
            # stop, bounded by graceful_timeout in the config), then SIGKILL.
            self._process = ManagedProcess(
                [str(executable), "-c", str(config_path), "serve"],
                cwd=self.workdir,
                log_path=self.log_path,
                stop_signal=signal.SIGTERM,
                signal_group=True,
                stop_timeout_s=_STOP_TIMEOUT_S,
            )
            try:
                self._process.wait_ready(
                    self._answers_info, timeout_s=_STARTUP_TIMEOUT_S, what="nostr-relay"
                )
                return self
            except ProcessError:  # exited (e.g. the port was taken) or never answered
                pass
            self.stop()
        raise RuntimeError(f"nostr-relay did not start; log tail:\n{self._log_tail()}")

    def _answers_info(self) -> bool:
        """Ready once the relay answers a NIP-11 info request (the worker is serving)."""
        try:
            response = httpx.get(
                f"http://127.0.0.1:{self.port}/",
                headers={"Accept": "application/nostr+json"},
                timeout=1.0,
            )
        except httpx.TransportError:
            return False
        return response.status_code == 200

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.stop()

    def _log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@contextmanager
def running_nostr_relay(workdir: Path) -> Iterator[LocalNostrRelay]:
    relay = LocalNostrRelay(workdir).start()
    try:
        yield relay
    finally:
        relay.stop()


@dataclass(frozen=True)
class ReceivedPrivateMessage:
    sender_pubkey_hex: str
    content: str
    rumor_kind: int
    gift_wrap_content: str  # the ciphertext as stored on the relay


def read_private_messages(
    relay_url: str,
    recipient_secret_key: str,
    timeout_s: float = 5.0,  # float-ok: seconds
) -> list[ReceivedPrivateMessage]:
    """Fetch every gift wrap addressed to the recipient from the relay and unwrap it.

    This is what the operator's Nostr client does: subscribe for kind-1059 events tagged with
    its own pubkey and decrypt them with its own secret key (NIP-17/NIP-59).
    """
    from nostr_sdk import (
        ClientBuilder,
        Filter,
        Keys,
        Kind,
        KindStandard,
        ReqTarget,
        UnwrappedGift,
    )
    from nostr_sdk import RelayUrl as SdkRelayUrl

    recipient = Keys.parse(recipient_secret_key)
    url = SdkRelayUrl.parse(relay_url)

    async def fetch() -> list[ReceivedPrivateMessage]:
        client = ClientBuilder().build()
        try:
            await client.add_relay(url)
            await client.connect(timedelta(seconds=timeout_s))
            gift_wraps = (
                Filter().kind(Kind.from_std(KindStandard.GIFT_WRAP)).pubkey(recipient.public_key())
            )
            events = await client.fetch_events(
                ReqTarget.single(url, [gift_wraps]), timedelta(seconds=timeout_s)
            )
        finally:
            await client.shutdown()
        messages = []
        for event in events:
            unwrapped = UnwrappedGift.from_gift_wrap(recipient, event)
            rumor = unwrapped.rumor()
            messages.append(
                ReceivedPrivateMessage(
                    sender_pubkey_hex=unwrapped.sender().to_hex(),
                    content=rumor.content(),
                    rumor_kind=rumor.kind().as_u16(),
                    gift_wrap_content=event.content(),
                )
            )
        return messages

    return asyncio.run(asyncio.wait_for(fetch(), timeout_s * 3))
