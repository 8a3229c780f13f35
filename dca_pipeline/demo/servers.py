"""Dagster servers on loopback for the demo and the front-door tests, stopped by PID.

A Dagster process started from a non-interactive shell inherits SIG_IGN for INT/TERM, so a plain
``kill`` does nothing, and killing only the parent of ``dagster dev`` orphans its code server and
daemon (dagster.md §2g). Every server here is a :class:`~dca_pipeline.demo.processes.ManagedProcess`
(own session, default signal dispositions restored), stopped with SIGINT by PID (Dagster's
graceful shutdown, children included) and, if it has not exited in time, its whole process group
gets SIGKILL.
"""

from __future__ import annotations

import shutil
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from dca_pipeline.demo.processes import ManagedProcess, ProcessError

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
LOCATION_NAME = "dca_pipeline"
STOP_TIMEOUT_S = 20.0  # float-ok: seconds
LOAD_TIMEOUT_S = 180.0  # float-ok: seconds


class ServerError(ProcessError):
    """A Dagster server did not start, did not load its code, or answered with an error."""


def dagster_command(name: str) -> str:
    """A console script of this venv (``dagster``, ``dagster-webserver``, ...)."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ServerError(f"{name} is not installed (run: bash scripts/bootstrap.sh)")
    return found


def _dagster_process(
    command: Sequence[str], *, env: Mapping[str, str], cwd: Path, log_path: Path | None
) -> ManagedProcess:
    """A Dagster server: SIGINT by PID is its graceful shutdown (children included)."""
    return ManagedProcess(
        command,
        env=env,
        cwd=cwd,
        log_path=log_path,
        stop_signal=signal.SIGINT,
        stop_timeout_s=STOP_TIMEOUT_S,
    )


def graphql(base_url: str, query: str, variables: Mapping[str, Any] | None = None) -> Any:
    """POST a GraphQL query to the webserver; the ``data`` member, or :class:`ServerError`."""
    response = httpx.post(
        f"{base_url}/graphql",
        json={"query": query, "variables": dict(variables or {})},
        timeout=60.0,
    )
    body = response.json()
    if response.status_code != 200 or body.get("errors"):
        raise ServerError(f"GraphQL error {response.status_code}: {body.get('errors')}")
    return body["data"]


LOCATION_QUERY = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on PythonError { message }
        }
      }
    }
  }
}
"""


def wait_for_code_location(
    base_url: str,
    server: ManagedProcess,
    *,
    location_name: str = LOCATION_NAME,
    timeout_s: float = LOAD_TIMEOUT_S,  # float-ok: seconds
) -> None:
    """Poll GraphQL until ``location_name`` is LOADED; raise with its error or the server log."""
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        if not server.running:
            raise ServerError(f"server exited ({server.process.returncode}):\n{server.log_tail()}")
        try:
            data = graphql(base_url, LOCATION_QUERY)
        except (httpx.TransportError, ValueError, ServerError) as exc:
            last = str(exc)
            time.sleep(0.5)
            continue
        entries = data["workspaceOrError"].get("locationEntries", [])
        for entry in entries:
            if entry["name"] != location_name:
                continue
            location = entry["locationOrLoadError"] or {}
            if location.get("__typename") == "PythonError":
                raise ServerError(f"code location failed to load: {location['message']}")
            if entry["loadStatus"] == "LOADED" and location.get("__typename"):
                return
            last = f"{location_name}: {entry['loadStatus']}"
        time.sleep(0.5)
    raise ServerError(f"{location_name} not loaded after {timeout_s:.0f} s ({last})")


def dismiss_community_prompt(base_url: str) -> None:
    """The UI greets a loopback origin with a newsletter modal over the graph; mark it seen."""
    graphql(base_url, "mutation { setNuxSeen }")


def grpc_workspace_file(path: Path, port: int) -> Path:
    """``deploy/workspace.grpc.yaml`` with the code server's port replaced (tests, free ports)."""
    text = (REPO_ROOT / "deploy" / "workspace.grpc.yaml").read_text()
    if "port: 4266" not in text:
        raise ServerError("deploy/workspace.grpc.yaml no longer names port 4266")
    path.write_text(text.replace("port: 4266", f"port: {port}"))
    return path


def start_code_server(
    port: int, *, env: Mapping[str, str], log_path: Path, cwd: Path = REPO_ROOT
) -> ManagedProcess:
    """The production code server of ``deploy/systemd``: ``dagster api grpc`` on loopback."""
    return _dagster_process(
        [
            dagster_command("dagster"),
            "api",
            "grpc",
            "--module-name",
            "dca_pipeline.definitions",
            "--location-name",
            LOCATION_NAME,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],  # fmt: skip
        env=env,
        cwd=cwd,
        log_path=log_path,
    )


def start_dagster_dev(
    port: int, *, env: Mapping[str, str], log_path: Path | None, cwd: Path = REPO_ROOT
) -> ManagedProcess:
    """``dagster dev`` (webserver + daemon + code server) on loopback with ``workspace.yaml``."""
    return _dagster_process(
        [
            dagster_command("dagster"),
            "dev",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workspace",
            str(REPO_ROOT / "workspace.yaml"),
        ],  # fmt: skip
        env=env,
        cwd=cwd,
        log_path=log_path,
    )


def start_daemon(
    workspace: Path, *, env: Mapping[str, str], log_path: Path, cwd: Path = REPO_ROOT
) -> ManagedProcess:
    """The production daemon of ``deploy/systemd``: sensors, run queue, backfills."""
    return _dagster_process(
        [dagster_command("dagster-daemon"), "run", "--workspace", str(workspace)],
        env=env,
        cwd=cwd,
        log_path=log_path,
    )


def start_webserver(
    port: int, workspace: Path, *, env: Mapping[str, str], log_path: Path, cwd: Path = REPO_ROOT
) -> ManagedProcess:
    return _dagster_process(
        [
            dagster_command("dagster-webserver"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workspace",
            str(workspace),
        ],  # fmt: skip
        env=env,
        cwd=cwd,
        log_path=log_path,
    )
