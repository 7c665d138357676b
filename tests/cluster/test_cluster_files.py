"""The cluster files: ray_cluster.yaml passes Ray's own checks, the systemd units verify, the env templates load.

No Ray cluster is started: these read the files and run the checks `ray up` and `systemd-analyze` run.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hugflow_ray.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CLUSTER_YAML = REPO / "ray_cluster.yaml"
CLUSTER = REPO / "cluster"
HEAD_UNIT = CLUSTER / "ray-head.service"
WORKER_UNIT = CLUSTER / "ray-worker.service"
RAY_ENV = CLUSTER / "ray.env.example"
RUNNER_ENV = CLUSTER / "runner.env.example"
CLUSTER_README = CLUSTER / "README.md"
RECONCILE_UNIT = CLUSTER / "hugflow-reconcile.service"
ENTRYPOINT = CLUSTER / "entrypoint.sh"
# Every file under cluster/ and the test(s) below that cover it.
# cluster/monitoring/ is run and checked by tests/cluster/test_metrics.py (a real Prometheus, promtool).
MONITORING = ("monitoring/prometheus.yml", "monitoring/hugflow.rules.yml", "monitoring/grafana-hugflow.json")
COVERED = {HEAD_UNIT.name, WORKER_UNIT.name, RAY_ENV.name, RUNNER_ENV.name, CLUSTER_README.name, RECONCILE_UNIT.name,
           ENTRYPOINT.name, *MONITORING}

STORAGE_RESOURCE = Settings.model_fields["storage_resource"].default
VENV_RAY = "/opt/hugflow/.venv/bin/ray"
ENV_FILE = "/etc/hugflow/ray.env"
JOB_SERVER = "http://127.0.0.1:8265"


# --- helpers ---------------------------------------------------------------------------------------------------


def _flag(args: list[str], name: str) -> str | None:
    """The value of ``--name=value`` or ``--name value`` in ``args``; None when absent."""
    for i, arg in enumerate(args):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(args):
            return args[i + 1]
    return None


def _statements(command: str) -> list[list[str]]:
    """A shell command line split into its `;`-separated simple commands, each as its words."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";")
    lexer.whitespace_split = True
    statements: list[list[str]] = [[]]
    for token in lexer:
        if set(token) == {";"}:
            statements.append([])
        else:
            statements[-1].append(token)
    return [s for s in statements if s]


def _ray_start(commands: list[str]) -> tuple[list[list[str]], dict[str, str], list[str]]:
    """In a launcher command list: the statements run before `ray start` in its command line, the variables
    assigned on its own words, and its arguments after `start`."""
    found = []
    for command in commands:
        statements = _statements(command)
        for i, words in enumerate(statements):
            assignments = {}
            while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
                key, value = words[0].split("=", 1)
                assignments[key] = value
                words = words[1:]
            if len(words) >= 2 and Path(words[0]).name == "ray" and words[1] == "start":
                found.append((statements[:i], assignments, words[2:]))
    assert len(found) == 1, f"expected one `ray start` in {commands}"
    return found[0]


def _check_token_env(before: list[list[str]], assignments: dict[str, str]) -> None:
    """The token settings reach `ray start`: RAY_AUTH_MODE=token, and the env file sourced with `set -a`."""
    assert assignments.get("RAY_AUTH_MODE") == "token", "ray start must run with RAY_AUTH_MODE=token"
    assert [".", ENV_FILE] in before or ["source", ENV_FILE] in before, f"{ENV_FILE} is not sourced"
    sourced = next(i for i, words in enumerate(before) if words[1:] == [ENV_FILE])
    assert ["set", "-a"] in before[:sourced], "without `set -a` the env file's RAY_AUTH_TOKEN is not exported"


def _check_head_start(config: dict[str, Any]) -> None:
    before, assignments, args = _ray_start(config["head_start_ray_commands"])
    assert "--head" in args
    assert _flag(args, "--port") == "6379"
    assert json.loads(_flag(args, "--resources") or "{}") == {STORAGE_RESOURCE: 1}, "the storage resource"
    assert (_flag(args, "--metrics-export-port") or "").isdigit(), "a metrics export port"
    assert _flag(args, "--dashboard-host") == "0.0.0.0"
    assert _flag(args, "--dashboard-port") == "8265"
    _check_token_env(before, assignments)


def _check_worker_start(config: dict[str, Any]) -> None:
    before, assignments, args = _ray_start(config["worker_start_ray_commands"])
    assert "--head" not in args
    assert _flag(args, "--address") == "$RAY_HEAD_IP:6379", "workers join the head's GCS"
    assert _flag(args, "--resources") is None, "only the head is the storage node"
    assert (_flag(args, "--metrics-export-port") or "").isdigit(), "a metrics export port"
    _check_token_env(before, assignments)


def _validate(raw: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` does with the file before anything else."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    return config


def _raw_cluster_yaml() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def _unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit's directives: section -> key -> values (keys such as Environment= may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    lines = iter(path.read_text().splitlines())
    for line in lines:
        line = line.strip()
        while line.endswith("\\"):
            line = line[:-1] + " " + next(lines).strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None and "=" in line, f"{path.name}: {line!r}"
        key, value = line.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _exec_start(path: Path) -> list[str]:
    values = _unit(path)["Service"]["ExecStart"]
    assert len(values) == 1
    return shlex.split(values[0])


def _env_file(path: Path) -> dict[str, str]:
    """A KEY=value file: blank lines and `#` comments aside, every line must be an assignment."""
    entries: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"([A-Z_][A-Z0-9_]*)=(.*)", line)
        assert match, f"{path.name}:{number}: not KEY=value: {line!r}"
        assert match[1] not in entries, f"{path.name}:{number}: {match[1]} set twice"
        entries[match[1]] = match[2]
    return entries


def _verify_complaints(units: list[Path]) -> list[str]:
    """Run `systemd-analyze verify` on the units; its complaints about them (other units' warnings aside)."""
    analyze = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
    assert Path(analyze).exists(), "systemd-analyze is missing: install the Debian package `systemd` (.ci/run does)"
    result = subprocess.run([analyze, "verify", *map(str, units)], capture_output=True, text=True, timeout=60)
    names = [u.name for u in units]
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if any(n in line for n in names)]
    if result.returncode != 0:
        complaints.append(f"exit code {result.returncode}: {result.stderr.strip()}")
    return complaints


def _installable_copy(unit: Path, directory: Path, env_file: Path) -> Path:
    """The unit as this machine can verify it: the real ray executable, user root, a real env file."""
    real_ray = Path(sys.executable).with_name("ray")
    assert real_ray.exists(), f"no ray executable next to {sys.executable}"
    text = unit.read_text()
    for old, new in ((VENV_RAY, str(real_ray)), (f"EnvironmentFile={ENV_FILE}", f"EnvironmentFile={env_file}")):
        assert old in text, f"{unit.name} does not name {old}"
        text = text.replace(old, new)
    text = re.sub(r"^(User|Group)=hugflow$", r"\1=root", text, flags=re.M)
    copy_path = directory / unit.name
    copy_path.write_text(text)
    return copy_path


# --- ray_cluster.yaml ------------------------------------------------------------------------------------------


def test_cluster_yaml_passes_ray_up_validation() -> None:
    config = _validate(_raw_cluster_yaml())
    assert config["cluster_name"] == "hugflow"
    assert config["provider"]["type"] == "local"
    assert config["provider"]["head_ip"] and config["provider"]["worker_ips"]
    assert config["auth"]["ssh_user"]


def test_cluster_yaml_head_is_the_storage_node_with_token_auth_and_metrics() -> None:
    _check_head_start(_validate(_raw_cluster_yaml()))


def test_cluster_yaml_workers_join_the_head_with_the_token() -> None:
    _check_worker_start(_validate(_raw_cluster_yaml()))


def test_cluster_yaml_installs_hugflow_into_the_venv_the_units_use() -> None:
    config = _validate(_raw_cluster_yaml())
    setup = "\n".join(config["setup_commands"])
    assert "python3 -m venv /opt/hugflow/.venv" in setup
    assert "/opt/hugflow/.venv/bin/pip install" in setup
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    assert all(VENV_RAY in command for command in starts)


@pytest.mark.parametrize(
    ("section", "key", "typo", "named"),
    [
        (None, "max_workers", "max_workerz", "max_workerz"),
        (None, "head_start_ray_commands", "head_start_ray_commandz", "head_start_ray_commandz"),
        ("auth", "ssh_user", "ssh_usr", "ssh_usr"),
        # The provider section admits any key, so Ray names the one it misses rather than the typo.
        ("provider", "worker_ips", "worker_ipz", "worker_ips"),
        ("provider", "head_ip", "head_ipp", "head_ip"),
    ],
)
def test_a_typo_in_the_cluster_yaml_fails_validation_naming_the_key(
    section: str | None, key: str, typo: str, named: str
) -> None:
    raw = _raw_cluster_yaml()
    target = raw if section is None else raw[section]
    target[typo] = target.pop(key, 2)
    with pytest.raises(Exception) as error:  # jsonschema's ValidationError, or click's exception from cli_logger
        _validate(raw)
    assert named in str(error.value)


def test_node_types_are_refused_for_the_on_prem_cluster() -> None:
    raw = _raw_cluster_yaml()
    raw["available_node_types"] = {"gpu": {"node_config": {}, "resources": {"GPU": 8}}}
    with pytest.raises(Exception, match="available_node_types"):
        _validate(raw)


@pytest.mark.parametrize(
    ("commands", "old", "new"),
    [
        ("head_start_ray_commands", f'"{STORAGE_RESOURCE}"', '"hugflow_storag"'),
        ("head_start_ray_commands", "RAY_AUTH_MODE=token ", ""),
        ("head_start_ray_commands", "set -a; ", ""),
        ("head_start_ray_commands", " --metrics-export-port=8080", ""),
        ("worker_start_ray_commands", "$RAY_HEAD_IP:6379", "127.0.0.1:6379"),
        ("worker_start_ray_commands", f". {ENV_FILE}; ", ""),
    ],
)
def test_the_start_command_checks_catch_a_broken_command(commands: str, old: str, new: str) -> None:
    """The checks above are not vacuous: each of these edits, valid to Ray, breaks one of them."""
    raw = _raw_cluster_yaml()
    assert any(old in command for command in raw[commands])
    raw[commands] = [command.replace(old, new) for command in raw[commands]]
    config = _validate(raw)
    with pytest.raises(AssertionError):
        (_check_head_start if commands.startswith("head") else _check_worker_start)(config)


# --- the systemd units -----------------------------------------------------------------------------------------


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    env_file = tmp_path / "ray.env"
    shutil.copyfile(RAY_ENV, env_file)
    env_file.chmod(0o600)
    units = [_installable_copy(unit, tmp_path, env_file) for unit in (HEAD_UNIT, WORKER_UNIT)]
    assert _verify_complaints(units) == []


@pytest.mark.parametrize(
    ("old", "new"),
    [("TimeoutStopSec=", "TimeoutStopSecs="), ("Restart=on-failure", "Restart=on-failur"), ("[Service]", "[Servce]")],
)
def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path: Path, old: str, new: str) -> None:
    env_file = tmp_path / "ray.env"
    shutil.copyfile(RAY_ENV, env_file)
    unit = _installable_copy(HEAD_UNIT, tmp_path, env_file)
    unit.write_text(unit.read_text().replace(old, new, 1))
    assert _verify_complaints([unit]) != []


def test_units_run_ray_in_the_foreground_from_the_venv_as_hugflow() -> None:
    for path in (HEAD_UNIT, WORKER_UNIT):
        unit = _unit(path)
        service = unit["Service"]
        argv = _exec_start(path)
        assert argv[:2] == [VENV_RAY, "start"] and "--block" in argv, path.name
        assert service["User"] == ["hugflow"] and service["Group"] == ["hugflow"], path.name
        assert service["EnvironmentFile"] == [ENV_FILE], path.name
        assert "PATH=/opt/hugflow/.venv/bin:/usr/local/bin:/usr/bin:/bin" in service["Environment"], path.name
        assert "RAY_AUTH_MODE=token" in service["Environment"], path.name
        assert service["Restart"] == ["on-failure"], path.name
        assert int(service["TimeoutStopSec"][0]) >= 60, path.name
        assert "network-online.target" in unit["Unit"]["After"][0].split(), path.name
        assert "ExecStop" not in service, f"{path.name}: systemd stops the unit's own cgroup"


def test_head_unit_is_the_storage_node() -> None:
    argv = _exec_start(HEAD_UNIT)
    assert "--head" in argv
    assert _flag(argv, "--port") == "6379"
    assert json.loads(_flag(argv, "--resources") or "{}") == {STORAGE_RESOURCE: 1}
    assert _flag(argv, "--metrics-export-port") == "8080"
    assert _flag(argv, "--dashboard-host") == "0.0.0.0"
    assert _flag(argv, "--dashboard-port") == "8265"
    assert _flag(argv, "--num-cpus") is None, "Ray detects the CPUs"


def test_worker_unit_joins_the_head_named_in_the_env_file() -> None:
    argv = _exec_start(WORKER_UNIT)
    assert "--head" not in argv
    assert _flag(argv, "--address") == "${RAY_HEAD_ADDRESS}"
    assert _flag(argv, "--resources") is None
    assert (_flag(argv, "--metrics-export-port") or "").isdigit()
    assert "RAY_HEAD_ADDRESS" in _env_file(RAY_ENV)


def test_units_never_kill_ray_processes_they_do_not_own() -> None:
    for path in (HEAD_UNIT, WORKER_UNIT, RECONCILE_UNIT, ENTRYPOINT):
        text = path.read_text()
        for word in ("ray stop", "pkill", "killall"):
            assert word not in text, f"{path.name} contains {word!r}"


# --- start-up reconcile ----------------------------------------------------------------------------------------


def test_reconcile_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    env_file = tmp_path / "hugflow.env"
    env_file.write_text(f"STORAGE_ROOT={tmp_path / 'datasets'}\nHUGFLOW_TIER=minimal\n")
    text = RECONCILE_UNIT.read_text()
    for old, new in (("/opt/hugflow/.venv/bin/hugflow", str(Path(sys.executable).with_name("hugflow"))),
                     ("EnvironmentFile=/etc/hugflow/hugflow.env", f"EnvironmentFile={env_file}"),
                     ("WorkingDirectory=/opt/hugflow/src", f"WorkingDirectory={REPO}")):
        assert old in text, f"{RECONCILE_UNIT.name} does not name {old}"
        text = text.replace(old, new)
    unit = tmp_path / RECONCILE_UNIT.name
    unit.write_text(re.sub(r"^(User|Group)=hugflow$", r"\1=root", text, flags=re.M))
    assert _verify_complaints([unit]) == []


def test_reconcile_unit_applies_once_per_boot_after_ray_and_never_stops_ray() -> None:
    unit = _unit(RECONCILE_UNIT)
    service = unit["Service"]
    assert service["Type"] == ["oneshot"]
    assert service["ExecStart"][0].split() == ["/opt/hugflow/.venv/bin/hugflow", "reconcile", "--apply"]
    assert service["User"] == ["hugflow"] and service["EnvironmentFile"] == ["/etc/hugflow/hugflow.env"]
    assert {"network-online.target", "ray-head.service"} <= set(unit["Unit"]["After"][0].split())
    assert "ExecStop" not in service
    assert "HUGFLOW_TIER" in RECONCILE_UNIT.read_text()


def _entrypoint(tmp_path: Path, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path),
                   "STORAGE_ROOT": str(tmp_path / "datasets"), "STATE_DIR": str(tmp_path / "state"),
                   "PROCESSED_ROOT": str(tmp_path / "processed"), "HF_ENDPOINT": "http://127.0.0.1:9", **env}
    return subprocess.run([str(ENTRYPOINT), *command], capture_output=True, text=True, env=environment, timeout=120)


def test_entrypoint_reconciles_then_starts_the_app(tmp_path: Path) -> None:
    result = _entrypoint(tmp_path, "sh", "-c", "echo app started")
    assert result.returncode == 0, result.stderr
    assert "nothing to do" in result.stdout and result.stdout.rstrip().endswith("app started")


def test_entrypoint_starts_the_app_after_a_failed_reconcile_unless_strict(tmp_path: Path) -> None:
    lenient = _entrypoint(tmp_path, "sh", "-c", "echo app started", HUGFLOW_TIER="no-such-tier")
    assert lenient.returncode == 0 and "app started" in lenient.stdout
    assert "there is no tier 'no-such-tier'" in lenient.stderr and "the next start resumes them" in lenient.stderr
    strict = _entrypoint(tmp_path, "sh", "-c", "echo app started", HUGFLOW_TIER="no-such-tier",
                         HUGFLOW_RECONCILE_STRICT="1")
    assert strict.returncode == 1 and "app started" not in strict.stdout


# --- the env templates -----------------------------------------------------------------------------------------


def test_ray_env_has_token_auth() -> None:
    env = _env_file(RAY_ENV)
    assert env["RAY_AUTH_MODE"] == "token"
    assert "RAY_AUTH_TOKEN" in env
    assert env["HF_TOKEN"] == "", "the storage node's own Hub token lives here (no job carries one)"
    assert "token_hex(32)" in RAY_ENV.read_text(), "say how to generate the token"


def test_runner_env_names_only_hugflow_settings_and_ray_variables() -> None:
    env = _env_file(RUNNER_ENV)
    allowed = {name.upper() for name in Settings.model_fields} | {"RAY_AUTH_MODE"}
    assert set(env) - allowed == set()
    assert {"HF_TOKEN", "SLACK_WEBHOOK_URL", "SLACK_BOT_TOKEN", "GITHUB_TOKEN"} & set(env) == set(), "secrets"
    assert {"STORAGE_ROOT", "STATE_DIR", "STORAGE_RESOURCE", "RAY_ADDRESS", "RAY_AUTH_TOKEN"} <= set(env)
    assert env["RAY_AUTH_MODE"] == "token"


def test_runner_env_loads_and_submits_to_the_job_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = _env_file(RUNNER_ENV)
    for key in env:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    dotenv = tmp_path / "runner.env"
    shutil.copyfile(RUNNER_ENV, dotenv)
    settings = Settings(_env_file=dotenv)  # type: ignore[call-arg]
    assert settings.ray_job_server == JOB_SERVER
    assert settings.storage_root == Path(env["STORAGE_ROOT"])
    assert settings.state_dir == Path(env["STATE_DIR"])
    assert settings.storage_resource == STORAGE_RESOURCE
    assert settings.secrets() == [], "an empty placeholder is no secret"


def test_runner_env_loading_can_fail(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The load above reads the file: a bad value in it is refused."""
    from pydantic import ValidationError

    for key in _env_file(RUNNER_ENV):
        monkeypatch.delenv(key, raising=False)
    dotenv = tmp_path / "runner.env"
    dotenv.write_text(RUNNER_ENV.read_text().replace("MP3_BITRATE=192", "MP3_BITRATE=191"))
    with pytest.raises(ValidationError, match="mp3_bitrate"):
        Settings(_env_file=dotenv)  # type: ignore[call-arg]


# --- the README and the directory ------------------------------------------------------------------------------


def test_cluster_readme_walks_through_every_file_and_port() -> None:
    text = CLUSTER_README.read_text()
    for name in sorted(COVERED - {CLUSTER_README.name}) + [CLUSTER_YAML.name]:
        assert name in text, f"cluster/README.md does not mention {name}"
    for needle in ("systemctl enable --now ray-head", "systemctl enable --now ray-worker", "ray up", ENV_FILE,
                   "ray status", "6379", "8265", "8080", JOB_SERVER, "hugflow submit", "--no-wait"):
        assert needle in text, f"cluster/README.md does not mention {needle!r}"
    assert len(text.splitlines()) < 160


def test_every_file_under_cluster_is_covered_by_a_test() -> None:
    present = {str(p.relative_to(CLUSTER)) for p in CLUSTER.rglob("*") if p.is_file()}
    assert present == COVERED, "a file under cluster/ without a test (or a test without its file)"
