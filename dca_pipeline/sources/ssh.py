"""Lamassu exports over SSH: ``psql ... -c "COPY (...) TO STDOUT ..."`` streamed back.

Why stream stdout instead of writing a file on the server and fetching it with SFTP/scp (what
the prior tools did, via ``/tmp/*.csv``): streaming leaves nothing on the Lamassu server (no
temp files to clean up, no other user reading them, no stale file picked up after a failed
export, no disk needed there), it is one SSH round trip on one connection, and completeness is
decided by one fact, the remote exit status, which SSH delivers only after all of stdout.

Security, in contrast with the prior art (prior-art.md §3, §5.7):

* the server's host key is **pinned** (``known_host_key``, required): it is the only key in the
  client's host-key store, the policy for any other host is a :class:`paramiko.RejectPolicy`,
  and no system ``known_hosts`` is consulted. Unknown or changed key → :class:`HostKeyError`;
* the private key is given as PEM text (``dg.EnvVar``), loaded in memory, never written to disk,
  never shown in ``repr()`` or in error messages; agent and ``~/.ssh`` keys are not used;
* the remote command line is built with :func:`shlex.join` and the libpq connection string
  with libpq quoting, so neither a database name nor any other setting can inject shell or
  connection options; the SQL contains only our constants and validated timestamps.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import secrets
import select
import shlex
import time
from collections.abc import Iterable
from typing import ClassVar

import dagster as dg
import paramiko
from paramiko.hostkeys import HostKeyEntry

from dca_pipeline.sources.base import (
    AuthenticationError,
    FetchWindow,
    HostKeyError,
    LamassuTable,
    RemoteCommandError,
    SecretMaskingMixin,
    SourceError,
    TransferError,
)
from dca_pipeline.sources.queries import (
    SESSION_SETTINGS_SQL,
    csv_header,
    export_sql,
    fingerprint_sql,
)

_READ_CHUNK = 1 << 16
_WINDOW_SIZE = 16 * 1024 * 1024  # fewer window-adjust round trips than paramiko's 2 MiB
_MAX_PACKET_SIZE = 1 << 15
_MAX_STDERR_IN_MESSAGE = 2000
_PRIVATE_KEY_CLASSES: tuple[type[paramiko.PKey], ...] = (
    paramiko.Ed25519Key,
    paramiko.ECDSAKey,
    paramiko.RSAKey,
)


def libpq_quote(value: str) -> str:
    """Quote a value for a libpq ``key=value`` connection string (single quotes, escapes)."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style ``SHA256:...`` fingerprint (public information, safe in messages)."""
    return key.fingerprint


def _looks_like_key_type(token: str) -> bool:
    return token.startswith(("ssh-", "ecdsa-", "sk-", "rsa-"))


def parse_known_host_key(line: str, *, host: str, port: int) -> tuple[list[str], paramiko.PKey]:
    """Host names and key of a pinned ``known_hosts`` line.

    ``"[host]:port ssh-ed25519 AAAA..."`` (names as written, hashed names allowed) or
    ``"ssh-ed25519 AAAA..."`` (pinned for the configured host and port).
    """
    fields = line.strip().split()
    if len(fields) < 2:
        raise HostKeyError("known_host_key is not a known_hosts line ('[host]:port type key')")
    if _looks_like_key_type(fields[0]):
        names = [host if port == 22 else f"[{host}]:{port}"]
        key_type, key_b64 = fields[0], fields[1]
    else:
        entry = HostKeyEntry.from_line(line.strip())
        if entry is None or entry.key is None:
            raise HostKeyError("known_host_key could not be parsed as a known_hosts line")
        return list(entry.hostnames), entry.key
    try:
        key = paramiko.PKey.from_type_string(key_type, base64.b64decode(key_b64, validate=True))
    except (binascii.Error, paramiko.SSHException, ValueError) as exc:
        raise HostKeyError(f"known_host_key holds no valid {key_type} key: {exc}") from None
    return names, key


def load_private_key(pem: str, passphrase: str | None) -> paramiko.PKey:
    """Load an OpenSSH/PEM Ed25519, ECDSA or RSA private key from text (never from disk)."""
    for key_class in _PRIVATE_KEY_CLASSES:
        try:
            return key_class.from_private_key(io.StringIO(pem), password=passphrase)
        except paramiko.PasswordRequiredException:
            raise AuthenticationError(
                "the SSH private key is encrypted: set private_key_passphrase"
            ) from None
        except (paramiko.SSHException, ValueError, TypeError, IndexError):
            continue  # not this key type (or a wrong passphrase); try the next one
    raise AuthenticationError(
        "the SSH private key could not be loaded (not an Ed25519/ECDSA/RSA key in OpenSSH or "
        "PEM format, or a wrong passphrase)"
    )


class _RejectUnpinnedHostKey(paramiko.RejectPolicy):
    """Reject every host not pinned, with our exception type (no trust-on-first-use)."""

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        raise HostKeyError(
            f"SSH host {hostname} offered a {key.get_name()} key {fingerprint(key)} that is not "
            "the pinned known_host_key; refusing to connect"
        )


class SshLamassuSource(SecretMaskingMixin, dg.ConfigurableResource):
    """Runs ``psql`` on the Lamassu server over SSH and streams the CSV export back."""

    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"private_key", "private_key_passphrase"})

    host: str
    port: int = 22
    username: str
    private_key: str
    private_key_passphrase: str | None = None
    known_host_key: str
    database: str = "lamassu"
    db_user: str | None = None
    db_host: str | None = None
    db_port: int | None = None
    psql_executable: str = "psql"
    connect_timeout_s: float = 15.0
    command_timeout_s: float = 600.0
    # zlib inside SSH: CSV shrinks several-fold, worth it on a slow link to the Lamassu server,
    # a small CPU cost on loopback or LAN.
    compress: bool = False

    # -- command construction ---------------------------------------------------------------

    def conninfo(self) -> str:
        """libpq connection string; host/user omitted means the server's socket and OS user."""
        parts = [("dbname", self.database)]
        if self.db_user is not None:
            parts.append(("user", self.db_user))
        if self.db_host is not None:
            parts.append(("host", self.db_host))
        if self.db_port is not None:
            parts.append(("port", str(int(self.db_port))))
        parts += [("connect_timeout", "15"), ("application_name", "dca-pipeline")]
        return " ".join(f"{name}={libpq_quote(value)}" for name, value in parts)

    def remote_argv(self, table: LamassuTable, window: FetchWindow) -> list[str]:
        # Server-side `COPY (...) TO STDOUT`, not psql's `\copy`: `\copy ... to stdout` is only
        # psql's wrapper that sends this same statement (same bytes), but as a meta-command it
        # must fill a whole -c argument and is parsed by psql's line-based rules. COPY TO STDOUT
        # streams over the client connection and needs nothing but SELECT on the table (unlike
        # COPY TO a file, which writes on the server and needs pg_write_server_files).
        argv = [self.psql_executable, "-X", "-q", "-w", "-v", "ON_ERROR_STOP=1"]
        argv += ["-d", self.conninfo()]
        for statement in (*SESSION_SETTINGS_SQL, export_sql(table, window)):
            argv += ["-c", statement]
        return argv

    def remote_argv_many(
        self, tables: list[LamassuTable], window: FetchWindow, marker: str
    ) -> list[str]:
        """ONE psql for several tables: one SSH session (its setup costs ~0.1-0.3 s on a
        typical server, more than a small export) and one REPEATABLE READ snapshot, so the
        tables agree with each other. ``\\echo <marker>`` separates the exports; the marker is
        random per fetch (hex), so no row can contain it."""
        if not re.fullmatch(r"[0-9a-f]{32}", marker):
            raise ValueError("marker must be 32 lowercase hex digits")
        argv = [self.psql_executable, "-X", "-q", "-w", "-v", "ON_ERROR_STOP=1"]
        argv += ["-d", self.conninfo()]
        for statement in SESSION_SETTINGS_SQL:
            argv += ["-c", statement]
        argv += ["-c", "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"]
        for index, table in enumerate(tables):
            if index:
                argv += ["-c", f"\\echo {marker}"]
            argv += ["-c", export_sql(table, window)]
        argv += ["-c", "ROLLBACK"]
        return argv

    def remote_command(self, table: LamassuTable, window: FetchWindow) -> str:
        """The exact command line the remote login shell runs (every word shell-quoted)."""
        return shlex.join(self.remote_argv(LamassuTable(table), window))

    def describe(self) -> str:
        """Non-secret identification for logs and metadata."""
        return f"ssh://{self.username}@{self.host}:{self.port} psql dbname={self.database}"

    # -- transport ---------------------------------------------------------------------------

    def _connect(self) -> paramiko.SSHClient:
        private_key = load_private_key(self.private_key, self.private_key_passphrase)
        names, pinned_key = parse_known_host_key(
            self.known_host_key, host=self.host, port=self.port
        )
        client = paramiko.SSHClient()
        # Only the pinned key is known; system known_hosts is deliberately not loaded.
        for name in names:
            client.get_host_keys().add(name, pinned_key.get_name(), pinned_key)
        client.set_missing_host_key_policy(_RejectUnpinnedHostKey())
        try:
            client.connect(
                hostname=self.host,
                port=self.port,
                username=self.username,
                pkey=private_key,
                allow_agent=False,
                look_for_keys=False,
                timeout=self.connect_timeout_s,
                banner_timeout=self.connect_timeout_s,
                auth_timeout=self.connect_timeout_s,
                compress=self.compress,
            )
        except SourceError:
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyError(
                f"SSH host key of {self.host}:{self.port} changed: got {exc.key.get_name()} "
                f"{fingerprint(exc.key)}, pinned {fingerprint(exc.expected_key)}; refusing"
            ) from None
        except paramiko.AuthenticationException:
            client.close()
            raise AuthenticationError(
                f"SSH server {self.host}:{self.port} refused the key for user {self.username!r}"
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            client.close()
            raise TransferError(
                f"cannot establish SSH connection to {self.host}:{self.port}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        return client

    def _run(self, client: paramiko.SSHClient, command: str) -> tuple[int, bytes, bytes]:
        """Run ``command``; return (exit status, stdout, stderr) or raise TransferError."""
        transport = client.get_transport()
        if transport is None or not transport.is_active():
            raise TransferError("SSH transport closed before the export started")
        deadline = time.monotonic() + self.command_timeout_s
        stdout, stderr = io.BytesIO(), io.BytesIO()
        try:
            channel = transport.open_session(
                window_size=_WINDOW_SIZE, max_packet_size=_MAX_PACKET_SIZE,
                timeout=self.connect_timeout_s,
            )
            channel.exec_command(command)
            # The channel's fileno signals both stdout and stderr data (and close), so one
            # loop drains both and neither stream can stall the other by filling the window.
            while True:
                while channel.recv_ready():
                    stdout.write(channel.recv(_READ_CHUNK))
                while channel.recv_stderr_ready():
                    stderr.write(channel.recv_stderr(_READ_CHUNK))
                # sshd may send exit-status while stdout is still in flight, so the end of the
                # data is the remote EOF (or the channel closing), not the exit status alone.
                finished = channel.closed or (
                    channel.eof_received and channel.exit_status_ready()
                )
                if finished and not (channel.recv_ready() or channel.recv_stderr_ready()):
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TransferError(
                        f"export did not finish within {self.command_timeout_s:g} s"
                    )
                select.select([channel], [], [], min(remaining, 1.0))
            # -1 means the channel closed without an exit-status message: the connection
            # dropped or the remote process was killed by a signal.
            status = channel.exit_status
            channel.close()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransferError(
                f"SSH transfer failed: {type(exc).__name__}: {exc}"
            ) from None
        return status, stdout.getvalue(), stderr.getvalue()

    # -- public API ---------------------------------------------------------------------------

    def _checked(
        self, table: LamassuTable, status: int, stdout: bytes, stderr: bytes
    ) -> bytes:
        error_text = stderr.decode("utf-8", "replace").strip()[-_MAX_STDERR_IN_MESSAGE:]
        if status == -1:
            raise TransferError(
                f"SSH connection to {self.host}:{self.port} ended without an exit status during "
                f"the {table} export ({len(stdout)} bytes discarded)"
                + (f"; remote stderr: {error_text}" if error_text else "")
            )
        if status != 0:
            raise RemoteCommandError(
                f"remote psql failed with exit status {status} during the {table} export: "
                + (error_text or "(no message on stderr)")
            )
        header = csv_header(table)
        if not stdout.startswith(header) or not stdout.endswith(b"\n"):
            raise TransferError(
                f"the {table} export is incomplete or malformed (expected the {len(header)}-byte "
                f"header and a final newline; got {len(stdout)} bytes)"
            )
        return stdout

    def fetch_many(
        self, tables: Iterable[LamassuTable], window: FetchWindow
    ) -> dict[LamassuTable, bytes]:
        """Every table over ONE SSH connection, ONE session and ONE psql (see
        :meth:`remote_argv_many`); each export complete or a :class:`SourceError`."""
        tables = [LamassuTable(t) for t in tables]
        if len(tables) == 1:
            command = self.remote_command(tables[0], window)
        else:
            marker = secrets.token_hex(16)
            command = shlex.join(self.remote_argv_many(tables, window, marker))
        client = self._connect()
        try:
            status, stdout, stderr = self._run(client, command)
        finally:
            client.close()
        if len(tables) == 1:
            return {tables[0]: self._checked(tables[0], status, stdout, stderr)}
        if status != 0:  # report the failure (with stderr) before looking at the data
            self._checked(tables[0], status, stdout, stderr)
        parts = stdout.split(f"\n{marker}\n".encode())
        if len(parts) != len(tables):
            raise TransferError(
                f"the export of {len(tables)} tables came back in {len(parts)} part(s) "
                f"({len(stdout)} bytes discarded)"
            )
        exports = [part + b"\n" for part in parts[:-1]] + [parts[-1]]
        return {
            table: self._checked(table, status, data, stderr)
            for table, data in zip(tables, exports, strict=True)
        }

    def fetch_csv(self, table: LamassuTable, window: FetchWindow) -> bytes:
        table = LamassuTable(table)
        return self.fetch_many([table], window)[table]

    def fingerprint(self, window: FetchWindow) -> str:
        """``count:md5`` per table of the window's rows, computed by psql on the server."""
        argv = [self.psql_executable, "-X", "-q", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1"]
        argv += ["-d", self.conninfo()]
        for statement in (*SESSION_SETTINGS_SQL, fingerprint_sql(window)):
            argv += ["-c", statement]
        client = self._connect()
        try:
            status, stdout, stderr = self._run(client, shlex.join(argv))
        finally:
            client.close()
        if status != 0:
            error_text = stderr.decode("utf-8", "replace").strip()[-_MAX_STDERR_IN_MESSAGE:]
            raise RemoteCommandError(
                f"remote psql failed with exit status {status} during the fingerprint query: "
                + (error_text or "(no message on stderr)")
            )
        return stdout.decode("utf-8", "replace").strip()
