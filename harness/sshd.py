"""A throwaway OpenSSH server on a free loopback port, for tests, benches and the demo.

Keys are generated with ``ssh-keygen`` in ``workdir``; only public-key login for the current
user is allowed; the server binds 127.0.0.1 only, runs in its own process group and is stopped
by its group id (:class:`~dca_pipeline.demo.processes.ManagedProcess`).
"""

from __future__ import annotations

import getpass
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from dca_pipeline.demo.processes import LOOPBACK, ManagedProcess, free_loopback_port

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
    _process: ManagedProcess = field(repr=False)

    @property
    def known_host_line(self) -> str:
        """The pinned-key line for this server: ``[127.0.0.1]:PORT ssh-ed25519 AAAA...``."""
        key_type, key_b64 = self.host_public_key_line.split()[:2]
        return f"[{self.host}]:{self.port} {key_type} {key_b64}"

    def stop(self) -> None:
        """Stop this sshd (its whole session) by PID and reap it."""
        self._process.stop()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )


def _answers_banner(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as conn:
            return conn.recv(8).startswith(b"SSH-")
    except OSError:
        return False


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

    host, port = LOOPBACK, free_loopback_port()
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
    log_path.write_bytes(b"")
    process = ManagedProcess(
        [str(SSHD_BINARY), "-D", "-e", "-f", str(config)],
        log_path=log_path,
        stop_signal=signal.SIGTERM,
        signal_group=True,
        stop_timeout_s=5.0,
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
        process.wait_ready(
            lambda: _answers_banner(host, port),
            timeout_s=start_timeout_s,
            interval_s=0.05,
            what=f"sshd on {host}:{port}",
        )
    except BaseException:
        handle.stop()
        raise
    return handle
