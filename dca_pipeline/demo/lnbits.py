"""A real LNbits (FakeWallet funding source) on a free loopback port: the demo's, and the tests'.

LNbits runs from its own virtualenv (it pins pydantic 1.x, which Dagster cannot share), built by
the project's bootstrap script::

    uv venv -p python3.11 .lnbits-venv
    uv pip install -p .lnbits-venv/bin/python 'lnbits==1.6.2' 'bitstring<5'

Payments between wallets of one LNbits are internal database moves, so FakeWallet gives real,
final transfers without a Lightning node. The server binds 127.0.0.1 only, is stopped by PID,
and dies with its parent (``PR_SET_PDEATHSIG``) so a killed test run cannot leak it
(:class:`~dca_pipeline.demo.processes.ManagedProcess`). The kernel sends that signal when the
*thread* that started the server ends, so the guard is only armed when starting from the main
thread; from another thread, call ``stop()`` yourself.
See ``/work/shared/reference/lnbits.md`` for the facts behind each setting.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from dca_pipeline.demo.processes import (
    ManagedProcess,
    ProcessError,
    ProcessExited,
    free_loopback_port,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LNBITS_PYTHON = REPO_ROOT / ".lnbits-venv" / "bin" / "python"
BUILD_HINT = (
    "build it with: uv venv -p python3.11 .lnbits-venv && "
    "uv pip install -p .lnbits-venv/bin/python 'lnbits==1.6.2' 'bitstring<5' "
    "(or point LNBITS_PYTHON at an interpreter that has lnbits 1.6.2)"
)
READY_TIMEOUT_S = 90.0  # float-ok: seconds
STOP_TIMEOUT_S = 15.0  # float-ok: seconds
PORT_ATTEMPTS = 3


class LNbitsServerError(RuntimeError):
    """The LNbits test server could not be started, bootstrapped or driven."""


@dataclass(frozen=True)
class Wallet:
    """One LNbits wallet; keys are secrets and stay out of ``repr``."""

    id: str
    adminkey: str = field(repr=False)
    inkey: str = field(repr=False)
    user_id: str
    name: str = ""


def resolve_lnbits_python(python: str | None = None) -> str:
    """The interpreter of the LNbits venv; a clear error (never a skip) when it is missing."""
    candidate = python or os.environ.get("LNBITS_PYTHON") or str(DEFAULT_LNBITS_PYTHON)
    if not Path(candidate).exists():
        raise RuntimeError(f"LNbits interpreter {candidate} does not exist; {BUILD_HINT}")
    return candidate


def _site_packages(python: str) -> str:
    """The directory that *contains* the ``lnbits`` package: LNbits mounts ``lnbits/static``
    relative to its CWD, and starting there also keeps pydantic from reading a stray ``.env``."""
    code = (
        "import importlib.util, os;"
        "print(os.path.dirname(os.path.dirname(importlib.util.find_spec('lnbits').origin)))"
    )
    result = subprocess.run(
        [python, "-c", code], check=False, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if result.returncode != 0:
        raise RuntimeError(f"{python} cannot import lnbits ({result.stderr.strip()}); {BUILD_HINT}")
    return result.stdout.strip()


def _server_env(
    port: int, workdir: Path, fake_wallet_secret: str, auth_secret: str
) -> dict[str, str]:
    # Inherited LNBITS_* settings would leak a developer's config into the test server.
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("LNBITS_", "FAKE_WALLET", "AUTH_", "FIRST_INSTALL"))
    }
    env.update(
        {
            "LNBITS_BACKEND_WALLET_CLASS": "FakeWallet",
            # Signs FakeWallet bolt11s; stable across restart() of the same data dir.
            "FAKE_WALLET_SECRET": fake_wallet_secret,
            "LNBITS_DATA_FOLDER": str(workdir / "data"),
            "LNBITS_EXTENSIONS_PATH": str(workdir / "ext"),
            # Must stay on: it creates the superuser, the only one allowed to mint sats.
            "LNBITS_ADMIN_UI": "true",
            # Default is 200 requests/min per IP, which a 100-payout test exceeds.
            "LNBITS_RATE_LIMIT_NO": "1000000",
            "LNBITS_RATE_LIMIT_UNIT": "minute",
            # No outbound calls: extension manifests and fiat price feeds.
            "LNBITS_EXTENSIONS_MANIFESTS": "[]",
            "LNBITS_WASM_EXTENSIONS_MANIFESTS": "[]",
            "LNBITS_EXCHANGE_RATE_PROVIDERS": "[]",
            "LNBITS_PRICE_AGGREGATOR_ENABLED": "false",
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "LNBITS_BASEURL": f"http://127.0.0.1:{port}/",
            # JWT signing key: stable across restart() so the bearer token stays valid.
            "AUTH_SECRET_KEY": auth_secret,
        }
    )
    return env


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("error") or body)[:300]
    return str(body)[:300]


class LNbitsServer:
    """Handle on a running LNbits; create it with :func:`start_lnbits`."""

    def __init__(self, python: str, workdir: Path, site_packages: str) -> None:
        self.python = python
        self.workdir = workdir
        self.site_packages = site_packages
        self.log_path = workdir / "lnbits.log"
        self.port = 0
        self.ready_after_s = 0.0  # float-ok: seconds
        self._process: ManagedProcess | None = None
        self._fake_wallet_secret = secrets.token_hex(16)
        self._auth_secret = secrets.token_hex(32)
        self._token = ""
        self._http: httpx.Client | None = None

    def __repr__(self) -> str:
        return f"LNbitsServer(url={self.url!r}, pid={self.pid}, workdir={str(self.workdir)!r})"

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _spawn(self, port: int) -> ManagedProcess:
        command = [
            self.python, "-m", "uvicorn", "lnbits.__main__:app",
            "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--no-access-log",
        ]  # fmt: skip
        env = _server_env(port, self.workdir, self._fake_wallet_secret, self._auth_secret)
        # Appends: after restart() the log keeps the whole story of the data dir.
        return ManagedProcess(
            command,
            cwd=self.site_packages,
            env=env,
            log_path=self.log_path,
            stop_signal=signal.SIGTERM,
            stop_timeout_s=STOP_TIMEOUT_S,
            die_with_parent=True,
        )

    def _wait_ready(self, process: ManagedProcess, log_offset: int) -> bool:
        """True once health answers; False when the port was taken (caller retries)."""
        with httpx.Client(timeout=2.0) as probe:

            def healthy() -> bool:
                try:
                    # 307 -> /first_install also means ready: the superuser is not set up yet.
                    answer = probe.get(f"{self.url}/api/v1/health", follow_redirects=False)
                except httpx.TransportError:
                    return False
                return answer.status_code in (200, 307)

            try:
                self.ready_after_s = process.wait_ready(
                    healthy, timeout_s=READY_TIMEOUT_S, what="LNbits"
                )
            except ProcessExited as exc:
                new_log = self.log_path.read_bytes()[log_offset:].decode(errors="replace")
                if "address already in use" in new_log.lower():
                    return False
                raise LNbitsServerError(str(exc)) from None
            except ProcessError as exc:
                raise LNbitsServerError(str(exc)) from None
        return True

    def _launch(self, fixed_port: int | None) -> None:
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self.port = fixed_port or free_loopback_port()
            log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            process = self._spawn(self.port)
            self._process = process
            if self._wait_ready(process, log_offset):
                return
            if attempt < PORT_ATTEMPTS and fixed_port is not None:
                time.sleep(0.5)  # our own old socket may linger briefly after restart()
        raise LNbitsServerError(
            f"LNbits could not bind a loopback port in {PORT_ATTEMPTS} attempts; "
            f"log tail:\n{self.log_tail()}"
        )

    def stop(self) -> int | None:
        """SIGTERM the server by PID, wait up to 15 s, then SIGKILL. Returns the exit status."""
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._process is None:
            return None
        return self._process.stop()

    def restart(self) -> None:
        """Stop and start again on the same data dir and port (FakeWallet forgets every unpaid
        invoice, which is what the "LNbits restarted between invoice and pay" tests need)."""
        self.stop()
        self._launch(fixed_port=self.port)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ admin API
    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(base_url=self.url, timeout=30.0)
        return self._http

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._client().request(method, path, **kwargs)
        if response.status_code >= 300:
            # Only method, path, status and LNbits' own detail: no header (key/token) values.
            raise LNbitsServerError(
                f"{method} {path} -> {response.status_code}: {_detail(response)}"
            )
        return response.json()

    def _bootstrap_superuser(self) -> None:
        password = secrets.token_urlsafe(18)
        body = self._call(
            "PUT",
            "/api/v1/auth/first_install",
            json={"username": "dcaadmin", "password": password, "password_repeat": password},
        )
        self._token = body["access_token"]
        me = self._call("GET", "/api/v1/auth", headers=self.admin_headers)
        if me.get("super_user") is not True:
            raise LNbitsServerError("first_install did not yield a super user")

    def new_wallet(self, name: str = "wallet") -> Wallet:
        """A new user with its default wallet, currency cleared (no fiat lookups per payment)."""
        stem = "".join(ch for ch in name if ch.isalnum())[:11] or "w"
        user = self._call(
            "POST",
            "/users/api/v1/user",
            json={"username": f"{stem}{secrets.token_hex(4)}"},
            headers=self.admin_headers,
        )
        wallets = self._call(
            "GET", f"/users/api/v1/user/{user['id']}/wallet", headers=self.admin_headers
        )
        raw = wallets[0]
        self._call(
            "PATCH",
            "/api/v1/wallet",
            json={"currency": "", "name": name[:60] or "wallet"},
            headers={"X-Api-Key": raw["adminkey"]},
        )
        return Wallet(
            id=raw["id"],
            adminkey=raw["adminkey"],
            inkey=raw["inkey"],
            user_id=user["id"],
            name=name,
        )

    def fund(self, wallet_id: str, sats: int) -> None:
        """Mint ``sats`` into a wallet (superuser top-up; negative debits)."""
        if not isinstance(sats, int) or isinstance(sats, bool):
            raise TypeError("sats must be an int")
        self._call(
            "PUT",
            "/users/api/v1/balance",
            json={"id": wallet_id, "amount": sats},
            headers=self.admin_headers,
        )

    def balance_msat(self, wallet: Wallet) -> int:
        body = self._call("GET", "/api/v1/wallet", headers={"X-Api-Key": wallet.inkey})
        return int(body["balance"])


def start_lnbits(workdir: Path, python: str | None = None) -> LNbitsServer:
    """Start LNbits with a fresh data dir under ``workdir`` and bootstrap its superuser.

    ``python`` defaults to ``$LNBITS_PYTHON``, else ``<repo>/.lnbits-venv/bin/python``. The data
    dir must be fresh: after the first start LNbits' DB settings win over the environment.
    """
    interpreter = resolve_lnbits_python(python)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if (workdir / "data" / "database.sqlite3").exists():
        raise LNbitsServerError(f"{workdir}/data already holds an LNbits database; use a fresh dir")
    server = LNbitsServer(interpreter, workdir, _site_packages(interpreter))
    try:
        server._launch(fixed_port=None)
        server._bootstrap_superuser()
    except BaseException:
        server.stop()
        raise
    return server
