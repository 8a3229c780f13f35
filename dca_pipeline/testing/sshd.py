"""A throwaway OpenSSH server on a free loopback port, for tests, benches and the demo.

Keys are generated with ``ssh-keygen`` in ``workdir``; only public-key login for the current
user is allowed; the server binds 127.0.0.1 only and is stopped by PID.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD_BINARY = Path("/usr/sbin/sshd")


@dataclass
class SshdHandle:
    host: str
    port: int
    username: str
    client_private_key_pem: str = field(repr=False)
    client_public_key_line: str
    host_public_key_line: str  # "ssh-ed25519 AAAA... comment"
    workdir: Path
    pid: int
    log_path: Path
    _process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def known_host_line(self) -> str:
        """The pinned-key line for this server: ``[127.0.0.1]:PORT ssh-ed25519 AAAA...``."""
        key_type, key_b64 = self.host_public_key_line.split()[:2]
        return f"[{self.host}]:{self.port} {key_type} {key_b64}"

    def stop(self) -> None:
        """Stop this sshd (its whole session) by PID and reap it."""
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self._process.wait(timeout=5)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )


def _wait_for_banner(
    host: str, port: int, process: subprocess.Popen[bytes], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with status {process.returncode} while starting")
        try:
            with socket.create_connection((host, port), timeout=0.5) as conn:
                if conn.recv(8).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd did not answer on {host}:{port} within {timeout} s")


def start_sshd(workdir: Path | str, *, start_timeout_s: float = 10.0) -> SshdHandle:
    """Start ``/usr/sbin/sshd -D -e`` with fresh keys in ``workdir``; stop it with ``stop()``."""
    if not SSHD_BINARY.exists():
        raise RuntimeError(f"{SSHD_BINARY} is missing: install the openssh-server package")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    # sshd's privilege separation needs this directory; it is normally made by systemd.
    Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)

    host_key, client_key = workdir / "ssh_host_ed25519_key", workdir / "client_ed25519_key"
    _keygen(host_key, "dca-pipeline-test-host")
    _keygen(client_key, "dca-pipeline-test-client")
    authorized_keys = workdir / "authorized_keys"
    client_public = client_key.with_suffix(".pub").read_text().strip()
    authorized_keys.write_text(client_public + "\n")
    authorized_keys.chmod(0o600)

    host, port = "127.0.0.1", _free_loopback_port()
    config = workdir / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"ListenAddress {host}",
                f"Port {port}",
                f"HostKey {host_key}",
                f"PidFile {workdir / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized_keys}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                "StrictModes no",
                "UsePAM no",
                "UseDNS no",
                "X11Forwarding no",
                "AllowTcpForwarding no",
                "PrintMotd no",
                "LogLevel INFO",
                "",
            ]
        )
    )
    log_path = workdir / "sshd.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(SSHD_BINARY), "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    handle = SshdHandle(
        host=host,
        port=port,
        username=getpass.getuser(),
        client_private_key_pem=client_key.read_text(),
        client_public_key_line=client_public,
        host_public_key_line=host_key.with_suffix(".pub").read_text().strip(),
        workdir=workdir,
        pid=process.pid,
        log_path=log_path,
        _process=process,
    )
    try:
        _wait_for_banner(host, port, process, start_timeout_s)
    except BaseException:
        handle.stop()
        raise
    return handle
