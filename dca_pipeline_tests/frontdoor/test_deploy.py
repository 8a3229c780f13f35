"""The production files in ``deploy/`` agree with the code they deploy (no servers started).

The end-to-end proofs are elsewhere in this folder: the pipeline on a dagster-postgres instance
built from ``deploy/dagster.postgres.yaml`` (``test_postgres_instance.py``) and the UI served
through the gRPC code-server topology of ``deploy/workspace.grpc.yaml`` (``test_ui_browser.py``).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import tomllib
from datetime import date, time
from pathlib import Path

import pytest
import yaml

from dca_pipeline.config import Config, Secret
from dca_pipeline.domain.money import format_cents

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SYSTEMD = DEPLOY / "systemd"
ENV_TEMPLATE = SYSTEMD / "dca-pipeline.env.example"
CONFIG_DOC = ROOT / "docs" / "configuration.md"
UNITS = sorted(SYSTEMD.glob("*.service"))
INSTALL_ROOT = "/opt/dca-pipeline"
ENV_FILE = "/etc/dca-pipeline/dca-pipeline.env"

# Variables the pipeline reads: EnvVar("X"), os.environ["X"] / .get("X"), os.getenv("X") and the
# settings helper env("X", default). Test harnesses (harness/) are not in the package.
ENV_READ = re.compile(
    r"""(?:EnvVar\(|environ(?:\.get)?[\[(]|getenv\(|\benv\()\s*["']([A-Z][A-Z0-9_]+)["']"""
)
# Constants that hold a variable's name, e.g. PAUSE_ENV = "DCA_PAYOUTS_PAUSED".
NAME_CONSTANT = re.compile(r"""["']((?:DCA|LAMASSU|DAGSTER_PG)_[A-Z0-9_]+)["']""")
# Names that look like variables in the code but are not settings of a deployment.
NOT_DEPLOYMENT_SETTINGS = {
    "LNBITS_PYTHON",  # test harness: the LNbits venv's interpreter
    "DCA_NOSTR_RELAY_BIN",  # test harness: the local Nostr relay
    "LAMASSU_PG_DSN",  # a docstring example (sources/postgres.py); read: DCA_LAMASSU_PG_DSN
}
SECRET_WORDS = ("KEY", "PASSWORD", "SECRET", "DSN", "TOKEN", "_URL")
#: Read by Dagster itself (dagster.yaml, the instance), not by the pipeline's code.
INSTANCE_VARIABLES = {"DAGSTER_HOME", "DAGSTER_PG_URL", "DCA_DAGSTER_LOG_DIR"}
DOC_ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]+)` \|([^|]*)\|([^|]*)\|", re.M)


def template_variables() -> dict[str, str]:
    values = {}
    for line in ENV_TEMPLATE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def variables_read_by_the_code() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "dca_pipeline").rglob("*.py"):
        text = path.read_text()
        names.update(ENV_READ.findall(text), NAME_CONSTANT.findall(text))
    return names - NOT_DEPLOYMENT_SETTINGS


def documented_rows() -> dict[str, tuple[str, str]]:
    """variable → (default cell, secret cell) of the tables in docs/configuration.md."""
    return {
        name: (default.strip(), secret.strip())
        for name, default, secret in DOC_ROW.findall(CONFIG_DOC.read_text())
    }


def default_as_text(field: dataclasses.Field) -> str | None:  # type: ignore[type-arg]
    """The default of a Config field as its variable would spell it; None: none to compare."""
    value = getattr(Config(), field.name)
    if isinstance(value, Secret) or value in (None, "", ()):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, time):
        return value.isoformat(timespec="minutes")
    if isinstance(value, date):
        return value.isoformat()
    if field.name == "max_daily_cents":
        return format_cents(value)
    return str(value)


def unit_settings(path: Path) -> dict[str, str]:
    """``Key=value`` of a unit file, continuation lines joined (enough for these units)."""
    text = path.read_text().replace("\\\n", " ")
    settings: dict[str, str] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings[key.strip()] = " ".join(value.split())
    return settings


def test_the_environment_template_lists_every_variable_the_code_reads() -> None:
    read = variables_read_by_the_code()
    assert {"DCA_LEDGER_URL", "DCA_TIMEZONE"} <= read  # the scan itself works
    missing = sorted(read - set(template_variables()))
    assert not missing, f"add to {ENV_TEMPLATE.relative_to(ROOT)}: {missing}"


def test_the_configuration_reference_documents_every_variable() -> None:
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", CONFIG_DOC.read_text(), re.M))
    assert documented == set(template_variables()), (
        f"only in the template: {sorted(set(template_variables()) - documented)}; "
        f"only in {CONFIG_DOC.name}: {sorted(documented - set(template_variables()))}"
    )


def test_config_docs_and_template_list_the_same_variables() -> None:
    settings = set(Config.variables().values())
    assert len(settings) == len(Config.variables())  # one variable per field
    assert all(name.startswith("DCA_") for name in settings)  # config() caches on DCA_*
    documented = set(documented_rows())
    assert settings - documented == set(), f"add to {CONFIG_DOC.name}"
    assert documented - settings == INSTANCE_VARIABLES, f"not in Config: {CONFIG_DOC.name}"
    template = set(template_variables())
    assert settings - template == set(), f"add to {ENV_TEMPLATE.name}"
    assert template - settings == INSTANCE_VARIABLES, f"not in Config: {ENV_TEMPLATE.name}"


def test_the_configuration_reference_states_each_default_and_secret_of_config() -> None:
    rows = documented_rows()
    for field in dataclasses.fields(Config):
        name = field.metadata["env"]
        default_cell, secret_cell = rows[name]
        assert (secret_cell == "yes") == (name in Config.secret_variables()), name
        expected = default_as_text(field)
        if expected is not None:
            assert default_cell == f"`{expected}`", f"{name}: documented {default_cell}"


def test_only_the_config_module_reads_dca_variables() -> None:
    """One reader (dca_pipeline/config.py) and one boolean parser."""
    reads = re.compile(r"""(?:environ(?:\.get)?[\[(]|getenv\()\s*["'](DCA_[A-Z0-9_]+)["']""")
    boolean_words = re.compile(r"""in \(\s*["']1["'],\s*["']true["']""")
    offenders = []
    for path in (ROOT / "dca_pipeline").rglob("*.py"):
        relative = path.relative_to(ROOT / "dca_pipeline")
        if relative == Path("config.py"):
            continue
        text = path.read_text()
        if reads.search(text) or boolean_words.search(text) or re.search(r"\benv\(", text):
            offenders.append(str(relative))
    assert not offenders, f"read settings through dca_pipeline.config: {offenders}"


def test_the_environment_template_holds_no_secret() -> None:
    checked = 0
    for name, value in template_variables().items():
        if not any(word in name for word in SECRET_WORDS):
            continue
        checked += 1
        visible = re.sub(r"<[^>]*>", "", value)  # <...> marks what the operator fills in
        assert not re.search(r"://[^/@:]+:[^/@]+@", visible), f"password in {name}"
        assert not re.search(r"[A-Za-z0-9+_-]{24,}", visible), f"key or token in {name}"
    assert checked >= 5


def test_every_instance_variable_of_the_postgres_instance_is_in_the_template() -> None:
    text = (DEPLOY / "dagster.postgres.yaml").read_text()
    used = set(re.findall(r"env:\s*([A-Z][A-Z0-9_]+)", text))
    assert used == {"DAGSTER_PG_URL", "DCA_DAGSTER_LOG_DIR"}
    assert used <= set(template_variables())
    assert template_variables()["DAGSTER_PG_URL"].startswith("postgresql+psycopg2://")


def test_the_postgres_instance_keeps_the_run_queue_of_the_embedded_default() -> None:
    embedded = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    production = yaml.safe_load((DEPLOY / "dagster.postgres.yaml").read_text())
    assert production["run_coordinator"] == embedded["run_coordinator"]
    limits = production["run_coordinator"]["config"]["tag_concurrency_limits"]
    assert {"key": "dca/payout", "limit": 1} in limits
    assert production["storage"] == {"postgres": {"postgres_url": {"env": "DAGSTER_PG_URL"}}}
    assert production["run_monitoring"]["enabled"] is True
    assert "storage" not in embedded  # the embedded default stays SQLite under DAGSTER_HOME


def test_the_grpc_workspace_points_at_the_code_server_unit() -> None:
    workspace = yaml.safe_load((DEPLOY / "workspace.grpc.yaml").read_text())
    (entry,) = workspace["load_from"]
    server = entry["grpc_server"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert server["location_name"] == pyproject["tool"]["dg"]["project"]["code_location_name"]
    assert server["host"] == "127.0.0.1"
    code_server = unit_settings(SYSTEMD / "dca-pipeline-code-server.service")["ExecStart"]
    assert f"--host {server['host']} --port {server['port']}" in code_server
    assert "--module-name dca_pipeline.definitions" in code_server


def test_units_bind_loopback_read_the_env_file_and_use_the_grpc_workspace() -> None:
    assert {unit.name for unit in UNITS} == {
        "dca-pipeline-code-server.service",
        "dca-pipeline-daemon.service",
        "dca-pipeline-webserver.service",
    }
    for unit in UNITS:
        settings = unit_settings(unit)
        assert settings["EnvironmentFile"] == ENV_FILE, unit.name
        assert settings["KillSignal"] == "SIGINT", unit.name  # Dagster's graceful stop
        assert settings["PartOf"] == "dca-pipeline.target", unit.name
        exec_start = settings["ExecStart"]
        assert exec_start.startswith(f"{INSTALL_ROOT}/.venv/bin/"), unit.name
        # The binary exists in this checkout's venv (the units name real commands).
        binary = exec_start.split()[0].replace(INSTALL_ROOT, str(ROOT))
        assert Path(binary).exists(), binary
        if "grpc" not in unit.name and "code-server" not in unit.name:
            assert f"--workspace {INSTALL_ROOT}/deploy/workspace.grpc.yaml" in exec_start
    webserver = unit_settings(SYSTEMD / "dca-pipeline-webserver.service")["ExecStart"]
    assert "--host 127.0.0.1" in webserver


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    (tmp_path / "env").write_text("")
    for source in [*UNITS, SYSTEMD / "dca-pipeline.target"]:
        text = source.read_text().replace(ENV_FILE, str(tmp_path / "env"))
        (tmp_path / source.name).write_text(text.replace(INSTALL_ROOT, str(ROOT)))
    result = subprocess.run(
        [analyze, "verify", "--man=no", *sorted(str(p) for p in tmp_path.glob("dca-*"))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # systemd-analyze exits 0 on unknown keys; its complaints are the signal.
    complaints = [
        line for line in (result.stdout + result.stderr).splitlines() if str(tmp_path) in line
    ]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr
