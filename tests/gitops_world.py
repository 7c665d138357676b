"""The pull-request workflow's world for tests: a git repository with base and head commits, the fake GitHub and
Slack on loopback, the canary secrets every flow counts, and the Actions-shaped event (shared by the PR-flow and
cluster tests)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from hugflow_ray.adapters.github import PullRequestClient
from hugflow_ray.drivers.base import Driver
from hugflow_ray.gitops import comments, control
from hugflow_ray.settings import load_settings
from hugflow_ray.utils.redact import configure_logging
from tests.conftest import HubFixture
from tests.github_server import FakeGitHub, SlackReceiver
from tests.hub_server import _git

REPO = "acme/datasets"
CANARY_HF = "hf_CanaryHubToken0123456789abcdef"
CANARY_GH = "ghs_CanaryGitHubToken0123456789abcdefABCD"
CANARY_SLACK_PATH = "/services/T0CANARY/B0CANARY/CanarySlackSecret42"
CANARIES = (CANARY_HF, CANARY_GH, CANARY_SLACK_PATH.rsplit("/", 1)[1])


def make_git_repo(repo: Path) -> Path:
    """The dataset-requests repository in ``repo``: a base commit with code, request directories and an example."""
    _git(repo, "init", "-q", "-b", "main")
    files = {"README.md": "# datasets\n", "hugflow_ray/__init__.py": "", "requests/add/.gitkeep": "",
             "requests/remove/.gitkeep": ""}
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "base")
    return repo


def commit(repo: Path, files: dict[str, str], *, on: str = "main") -> str:
    """A head commit on top of ``on`` that writes ``files``; returns its sha (``main`` is left where it was)."""
    _git(repo, "checkout", "-q", "--detach", on)
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", f"change {', '.join(files)}")
    sha = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "-q", "main")
    return sha


def request_yaml(hf_id: str, **fields: str) -> str:
    extra = "".join(f"{k}: {v}\n" for k, v in fields.items())
    return f"hf_id: {hf_id}\ndescription: calls for the test\n{extra}"


@dataclass
class World:
    """The fake GitHub, the Slack receiver, the paths, and the canary check over all of them."""

    github: FakeGitHub
    slack: SlackReceiver
    repo: Path
    base: str
    root: Path
    monkeypatch: pytest.MonkeyPatch
    capfd: pytest.CaptureFixture[str]
    caplog: pytest.LogCaptureFixture

    def open_pull(self, number: int, files: dict[str, str], *, action: str = "opened", head_repo: str | None = None,
                  labels: list[str] | None = None, label: str | None = None) -> str:
        head = commit(self.repo, files)
        self.event(number, head, action=action, head_repo=head_repo, labels=labels, label=label)
        return head

    def event(self, number: int, head: str, *, action: str, head_repo: str | None = None,
              labels: list[str] | None = None, label: str | None = None) -> None:
        """The PR at ``head`` as GitHub now shows it, and the Actions event about it."""
        self.github.open_pull(number, head_sha=head, base_sha=self.base, head_repo=head_repo, labels=labels)
        event = {"action": action, "number": number, "pull_request": {
            "number": number, "head": {"sha": head, "repo": {"full_name": head_repo or REPO}},
            "base": {"sha": self.base, "repo": {"full_name": REPO}}}}
        if label:
            event["label"] = {"name": label}
        path = self.root / f"event-{number}-{action}.json"
        path.write_text(json.dumps(event))
        self.monkeypatch.setenv("GITHUB_EVENT_PATH", str(path))

    def run(self, driver: Driver | None = None, **env: str) -> int:
        """``sync --ci-mode`` in process (fast retries, no write spacing); the driver is a real child process."""
        for key, value in env.items():
            self.monkeypatch.setenv(key, value)
        settings = load_settings()
        configure_logging(settings.log_level, settings.secrets())  # as the CLI does
        number = control.load_event(settings).number
        client = PullRequestClient(api_url=self.github.api_url, token=CANARY_GH, repository=REPO, number=number,
                                   attempts=4, backoff_seconds=0.05, seconds_between_writes=0)
        return control.run(settings, driver=driver, github=client, poll_seconds=0.2)

    def comment(self, number: int, path: str) -> str:
        bodies = [b for b in self.github.comments_on(number) if comments.request_marker(path) in b]
        assert len(bodies) == 1, f"expected one living comment for {path}, found {len(bodies)}"
        return bodies[0]

    def pr_comment(self, number: int) -> str:
        (body,) = [b for b in self.github.comments_on(number) if comments.PR_MARKER in b]
        return body

    def history(self, path: str) -> list[str]:
        """Every body ever sent for ``path``'s comment (creates and edits, in order)."""
        marker = comments.request_marker(path)
        return [json.loads(b)["body"] for m, _, b in self.github.requests if m in ("POST", "PATCH") and marker in b]

    def assert_no_canary(self, *texts: str) -> None:
        """No canary in what GitHub and Slack received, in ``texts``, this process's output and log records,
        or any file under the test's directory (datasets, state, processed links, the event)."""
        captured = self.capfd.readouterr()
        found = []
        sources = {"github request bodies": self.github.bodies(), "slack payloads": self.slack.bodies,
                   "outputs and logs": [*texts, captured.out, captured.err, self.caplog.text]}
        for name, items in sources.items():
            found += [(name, c) for item in items for c in CANARIES if c in item]
        for path in self.root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                found += [(str(path), c) for c in CANARIES if c.encode() in data]
        assert found == [], f"canary secrets leaked: {found}"


@contextmanager
def open_world(hub: HubFixture, git_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
               capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> Iterator[World]:
    """The fake GitHub and Slack for one test, and the environment of an Actions run on a PR of ``git_repo``."""
    with FakeGitHub(git_repo, REPO) as github, SlackReceiver() as slack:
        monkeypatch.setenv("GITHUB_ACTIONS", "true")
        monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
        monkeypatch.setenv("GITHUB_API_URL", github.api_url)
        monkeypatch.setenv("GITHUB_TOKEN", CANARY_GH)
        monkeypatch.setenv("HF_TOKEN", CANARY_HF)
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.url + CANARY_SLACK_PATH)
        monkeypatch.setenv("STORAGE_ROOT", str(tmp_path / "datasets"))
        monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
        monkeypatch.setenv("PROCESSED_ROOT", str(tmp_path / "processed"))
        monkeypatch.setenv("PROGRESS_INTERVAL", "4")
        yield World(github, slack, git_repo, _git(git_repo, "rev-parse", "main"), tmp_path, monkeypatch, capfd,
                    caplog)
