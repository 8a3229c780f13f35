"""The SSH source against a real sshd: pinned host keys, auth, remote failures, drops."""

from __future__ import annotations

import shlex
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import paramiko
import psycopg2.extensions
import pytest

from dca_pipeline.sources import (
    COLUMNS,
    AuthenticationError,
    HostKeyError,
    LamassuTable,
    PostgresLamassuSource,
    RemoteCommandError,
    SourceError,
    SshLamassuSource,
    TransferError,
)
from dca_pipeline_tests.sources.conftest import LamassuDatabase, write_executable
from harness.sshd import SshdHandle

MakeSsh = Callable[..., SshLamassuSource]


def keygen(directory: Path, name: str, passphrase: str = "") -> tuple[str, str]:
    """(private PEM, public line) of a fresh ed25519 key."""
    path = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(path)],
        check=True, capture_output=True,
    )  # fmt: skip
    return path.read_text(), path.with_suffix(".pub").read_text().strip()


def pem_body_lines(pem: str) -> list[str]:
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        for fragment in pem_body_lines(secret) or [secret]:
            assert fragment not in text


def test_pinned_key_without_host_part_is_accepted(
    make_ssh_source: MakeSsh, sshd: SshdHandle, lamassu_db: LamassuDatabase
) -> None:
    bare = " ".join(sshd.known_host_line.split()[1:3])
    data = make_ssh_source(lamassu_db.dbname, known_host_key=bare).fetch_csv(
        LamassuTable.CASH_IN_TXS, lamassu_db.summary.window
    )
    assert data.startswith(b"id,device_id,")


def test_pinned_key_with_hashed_host_name_is_accepted(
    make_ssh_source: MakeSsh, sshd: SshdHandle, lamassu_db: LamassuDatabase
) -> None:
    hashed = paramiko.HostKeys.hash_host(f"[{sshd.host}]:{sshd.port}")
    line = " ".join([hashed, *sshd.known_host_line.split()[1:3]])
    data = make_ssh_source(lamassu_db.dbname, known_host_key=line).fetch_csv(
        LamassuTable.CASH_IN_TXS, lamassu_db.summary.window
    )
    assert data.startswith(b"id,device_id,")


def test_changed_host_key_is_refused(
    make_ssh_source: MakeSsh, sshd: SshdHandle, lamassu_db: LamassuDatabase, tmp_path: Path
) -> None:
    _, other_public = keygen(tmp_path, "impostor")
    key_type, key_b64 = other_public.split()[:2]
    source = make_ssh_source(
        lamassu_db.dbname, known_host_key=f"[{sshd.host}]:{sshd.port} {key_type} {key_b64}"
    )
    with pytest.raises(HostKeyError, match="changed") as caught:
        source.fetch_csv(LamassuTable.CASH_OUT_TXS, lamassu_db.summary.window)
    assert_no_secret(str(caught.value), sshd.client_private_key_pem)


def test_unknown_host_is_refused_not_trusted_on_first_use(
    make_ssh_source: MakeSsh, sshd: SshdHandle, lamassu_db: LamassuDatabase
) -> None:
    key_part = " ".join(sshd.known_host_line.split()[1:3])
    pinned_elsewhere = f"[lamassu.example]:{sshd.port} {key_part}"
    source = make_ssh_source(lamassu_db.dbname, known_host_key=pinned_elsewhere)
    with pytest.raises(HostKeyError, match="not the pinned"):
        source.fetch_csv(LamassuTable.CASH_OUT_TXS, lamassu_db.summary.window)


def test_garbage_known_host_key_is_refused(
    make_ssh_source: MakeSsh, lamassu_db: LamassuDatabase
) -> None:
    with pytest.raises(HostKeyError):
        make_ssh_source(lamassu_db.dbname, known_host_key="ssh-ed25519 not-base64!").fetch_csv(
            LamassuTable.CASH_OUT_TXS, lamassu_db.summary.window
        )


def test_unauthorized_key_is_refused(
    make_ssh_source: MakeSsh, lamassu_db: LamassuDatabase, tmp_path: Path
) -> None:
    stranger_pem, _ = keygen(tmp_path, "stranger")
    source = make_ssh_source(lamassu_db.dbname, private_key=stranger_pem)
    with pytest.raises(AuthenticationError, match="refused the key") as caught:
        source.fetch_csv(LamassuTable.CASH_OUT_TXS, lamassu_db.summary.window)
    assert_no_secret(str(caught.value), stranger_pem)
    assert_no_secret(repr(source), stranger_pem)


def test_unloadable_private_key_is_an_authentication_error(
    make_ssh_source: MakeSsh, lamassu_db: LamassuDatabase
) -> None:
    junk = (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWp1bms=\n"
        "-----END OPENSSH PRIVATE KEY-----"
    )
    with pytest.raises(AuthenticationError, match="could not be loaded") as caught:
        make_ssh_source(lamassu_db.dbname, private_key=junk).fetch_csv(
            LamassuTable.CASH_OUT_TXS, lamassu_db.summary.window
        )
    assert "c2VjcmV0LWp1bms" not in str(caught.value)


def test_encrypted_key_needs_its_passphrase(
    make_ssh_source: MakeSsh, sshd: SshdHandle, lamassu_db: LamassuDatabase, tmp_path: Path
) -> None:
    passphrase = "correct horse battery staple"
    pem, public = keygen(tmp_path, "encrypted", passphrase)
    with (sshd.workdir / "authorized_keys").open("a") as authorized:
        authorized.write(public + "\n")
    window = lamassu_db.summary.window
    with pytest.raises(AuthenticationError, match="encrypted"):
        make_ssh_source(lamassu_db.dbname, private_key=pem).fetch_csv("cash_in_txs", window)
    wrong = make_ssh_source(lamassu_db.dbname, private_key=pem, private_key_passphrase="nope")
    with pytest.raises(AuthenticationError):
        wrong.fetch_csv(LamassuTable.CASH_IN_TXS, window)
    right = make_ssh_source(
        lamassu_db.dbname, private_key=pem, private_key_passphrase=passphrase
    )
    assert right.fetch_csv(LamassuTable.CASH_IN_TXS, window).startswith(b"id,")
    assert passphrase not in repr(right) and passphrase not in str(right)
    assert_no_secret(repr(right), pem)


def test_remote_psql_failure_reports_psqls_message(
    make_ssh_source: MakeSsh, sshd: SshdHandle, lamassu_db: LamassuDatabase
) -> None:
    source = make_ssh_source("no_such_lamassu_db")
    with pytest.raises(RemoteCommandError, match='database "no_such_lamassu_db" does not exist'
                       ) as caught:
        source.fetch_csv(LamassuTable.CASH_OUT_TXS, lamassu_db.summary.window)
    assert_no_secret(str(caught.value), sshd.client_private_key_pem)


def test_database_name_cannot_inject_shell_or_connection_options(
    make_ssh_source: MakeSsh, lamassu_db: LamassuDatabase, tmp_path: Path
) -> None:
    victim = tmp_path / "x"
    victim.mkdir()
    (victim / "keep").write_text("still here")
    marker = tmp_path / "pwned"
    database = (
        f"lamassu; rm -rf {victim}; touch {marker} $(touch {marker}) `touch {marker}` "
        f"' host=evil.example dbname=postgres"
    )
    source = make_ssh_source(database)
    argv = shlex.split(source.remote_command(LamassuTable.CASH_OUT_TXS,
                                             lamassu_db.summary.window))
    conninfo = argv[argv.index("-d") + 1]
    parsed = psycopg2.extensions.parse_dsn(conninfo)
    assert parsed["dbname"] == database and parsed["host"] == "127.0.0.1"
    with pytest.raises(RemoteCommandError, match="does not exist"):
        source.fetch_csv(LamassuTable.CASH_OUT_TXS, lamassu_db.summary.window)
    assert (victim / "keep").read_text() == "still here"
    assert not marker.exists()


def _half_export_then(
    tmp_path: Path, pg_source: PostgresLamassuSource, lamassu_db: LamassuDatabase, ending: str
) -> tuple[Path, bytes]:
    export = pg_source.fetch_csv(LamassuTable.CASH_OUT_TXS, lamassu_db.summary.window)
    (tmp_path / "real.csv").write_bytes(export)
    half = len(export) // 2
    script = write_executable(
        tmp_path / "fake_psql",
        f"#!/bin/sh\nhead -c {half} {tmp_path / 'real.csv'}\n{ending}\n",
    )
    return script, export[:half]


def test_remote_process_killed_mid_transfer_returns_nothing(
    make_ssh_source: MakeSsh, pg_source: PostgresLamassuSource, lamassu_db: LamassuDatabase,
    tmp_path: Path,
) -> None:
    script, half = _half_export_then(tmp_path, pg_source, lamassu_db, "kill -9 $$")
    source = make_ssh_source(lamassu_db.dbname, psql_executable=str(script))
    with pytest.raises(TransferError, match="without an exit status") as caught:
        source.fetch_csv(LamassuTable.CASH_OUT_TXS, lamassu_db.summary.window)
    assert half[-40:].decode() not in str(caught.value)


def test_connection_dropped_mid_transfer_returns_nothing(
    make_ssh_source: MakeSsh, pg_source: PostgresLamassuSource, lamassu_db: LamassuDatabase,
    tmp_path: Path,
) -> None:
    script, _ = _half_export_then(tmp_path, pg_source, lamassu_db, "exec sleep 3")
    source = make_ssh_source(lamassu_db.dbname, psql_executable=str(script))
    original_run = SshLamassuSource._run
    received: list[int] = []

    def run_then_drop(self: SshLamassuSource, client: paramiko.SSHClient, command: str):
        transport = client.get_transport()
        assert transport is not None
        # Fault injection a live server cannot produce on demand: the TCP connection dies.
        dropper = threading.Timer(0.7, transport.close)
        dropper.start()
        try:
            result = original_run(self, client, command)
            received.append(len(result[1]))
            return result
        finally:
            dropper.cancel()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SshLamassuSource, "_run", run_then_drop)
        with pytest.raises(TransferError, match="without an exit status"):
            source.fetch_csv(LamassuTable.CASH_OUT_TXS, lamassu_db.summary.window)
    assert received and received[0] > 0  # half had arrived, and was discarded


def test_command_timeout_is_a_transfer_error(
    make_ssh_source: MakeSsh, lamassu_db: LamassuDatabase, tmp_path: Path
) -> None:
    script = write_executable(tmp_path / "slow_psql", "#!/bin/sh\nexec sleep 3\n")
    source = make_ssh_source(
        lamassu_db.dbname, psql_executable=str(script), command_timeout_s=0.5
    )
    with pytest.raises(TransferError, match="did not finish"):
        source.fetch_csv(LamassuTable.CASH_OUT_TXS, lamassu_db.summary.window)


def test_exit_zero_with_truncated_output_is_refused(
    make_ssh_source: MakeSsh, pg_source: PostgresLamassuSource, lamassu_db: LamassuDatabase,
    tmp_path: Path,
) -> None:
    script, _ = _half_export_then(tmp_path, pg_source, lamassu_db, "printf x; exit 0")
    source = make_ssh_source(lamassu_db.dbname, psql_executable=str(script))
    with pytest.raises(TransferError, match="incomplete"):
        source.fetch_csv(LamassuTable.CASH_OUT_TXS, lamassu_db.summary.window)


def test_unreachable_server_is_a_transfer_error(
    make_ssh_source: MakeSsh, lamassu_db: LamassuDatabase
) -> None:
    from dca_pipeline.demo.processes import free_loopback_port

    closed_port = free_loopback_port()  # a port with nothing listening
    source = make_ssh_source(lamassu_db.dbname, port=closed_port)
    with pytest.raises(SourceError):
        source.fetch_csv(LamassuTable.CASH_OUT_TXS, lamassu_db.summary.window)


def test_repr_never_shows_the_private_key(make_ssh_source: MakeSsh, sshd: SshdHandle) -> None:
    source = make_ssh_source("lamassu", private_key_passphrase="hunter2-passphrase")
    for text in (repr(source), str(source), f"{source!r}"):
        assert_no_secret(text, sshd.client_private_key_pem, "hunter2-passphrase")
        assert "private_key='***'" in text or "private_key=***" in text
    assert "BEGIN" not in repr(sshd)


def test_large_output_is_received_completely_even_if_exit_status_comes_first(
    make_ssh_source: MakeSsh, lamassu_db: LamassuDatabase, tmp_path: Path
) -> None:
    # Regression: sshd may send exit-status while megabytes of stdout are still in flight;
    # the transfer ends at the remote EOF, not at the exit status.
    header = ",".join(COLUMNS[LamassuTable.CASH_IN_TXS])
    lines = 1_500_000
    script = write_executable(
        tmp_path / "big_psql", f"#!/bin/sh\necho '{header}'\nyes 'a,b,c,d' | head -n {lines}\n"
    )
    source = make_ssh_source(lamassu_db.dbname, psql_executable=str(script))
    data = source.fetch_csv(LamassuTable.CASH_IN_TXS, lamassu_db.summary.window)
    assert len(data) == len(header) + 1 + lines * len("a,b,c,d\n")


def test_compressed_transfer_returns_the_same_bytes(
    make_ssh_source: MakeSsh, pg_source: PostgresLamassuSource, lamassu_db: LamassuDatabase
) -> None:
    window = lamassu_db.summary.window
    compressed = make_ssh_source(lamassu_db.dbname, compress=True)
    assert compressed.fetch_csv(LamassuTable.CASH_OUT_ACTIONS, window) == pg_source.fetch_csv(
        LamassuTable.CASH_OUT_ACTIONS, window
    )
