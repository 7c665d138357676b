"""The pull-request workflow end to end: the real PyGithub against a stateful fake GitHub API on loopback, the
real slack_sdk against a loopback receiver, the olah Hub, a real git repository with base and head commits,
an Actions-shaped event file, and the real driver process (``hugflow local-sync`` on an embedded Ray).

Every flow ends by counting canary secrets (HF_TOKEN, GITHUB_TOKEN, the Slack webhook URL) in every comment,
Slack payload, log line, output line and file written: the count must be zero.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hugflow_ray.adapters.github import COMMENT_LIMIT, ChangedFile, PullFacts, fit_comment
from hugflow_ray.copies.locks import DatasetLock
from hugflow_ray.copies.status import read_status
from hugflow_ray.drivers.local import LocalDriver, _ProcessRun
from hugflow_ray.errors import CIError
from hugflow_ray.gitops import comments, control, gate
from hugflow_ray.settings import load_settings
from tests.conftest import HubFixture
from tests.github_server import SlackReceiver, rate_limit_headers
from tests.gitops_world import (
    CANARY_SLACK_PATH,
    REPO,
    World,
    request_yaml,
)

pytestmark = pytest.mark.hub

@pytest.fixture(autouse=True)
def drivers_join_a_running_ray(joined_ray: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner's drivers join a running Ray, as on the team's server (the cluster tests point them at theirs)."""
    for name, value in joined_ray.items():
        monkeypatch.setenv(name, value)


def test_an_add_request_syncs_and_reports_on_one_living_comment(world: World, hub: HubFixture,
                                                               tmp_path: Path) -> None:
    """Through the real command (`hugflow sync --ci-mode` as a process): plan, progress, success; no merge."""
    path = "requests/add/calls.yaml"
    head = world.open_pull(1, {path: request_yaml("org/calls")})
    result = subprocess.run([sys.executable, "-m", "hugflow_ray", "sync", "--ci-mode"], capture_output=True,
                            text=True, timeout=300, env=dict(os.environ))
    assert result.returncode == 0, result.stdout + result.stderr
    history = world.history(path)
    assert "starting" in history[0]
    planned = next(b for b in history if "planned" in b)
    assert hub.shas["org/calls"] in planned and "| rows | 12 |" in planned and "| licence | CC-BY-4.0: allowed |" in planned
    peak = re.search(r"\| source on disk \| at most (.+?) at once: each file is deleted once its rows are converted \|",
                     planned)
    assert peak is not None, "the files' sizes come from the Hub's tree when its file list names them only (olah)"
    assert any("syncing" in b and "/ 12 rows" in b for b in history), history
    final = world.comment(1, path)
    assert final == history[-1] and "✅ synced" in final and "| rows | 12 |" in final
    assert hub.shas["org/calls"] in final and str(tmp_path / "datasets") in final
    dataset = next((tmp_path / "datasets").iterdir())
    assert len(list((dataset / "audio").glob("*/*.mp3"))) == 12
    assert not world.github.pulls[1].merged, "AUTO_MERGE is off by default: an operator merges"
    assert world.github.requests.count(("GET", f"/repos/{REPO}/contents/{path}", "")) == 1
    assert any(head[:12] in str(p) for p in (tmp_path / "state" / "ci" / "pr-1").iterdir())
    assert "syncing `org/calls`" in world.slack.messages[0] and "synced: 12 rows" in world.slack.messages[-1]
    world.assert_no_canary(result.stdout, result.stderr)


def test_row_errors_are_listed_and_github_failures_do_not_stop_the_sync(world: World) -> None:
    """502s and a 403 rate limit mid-run are retried; edits that still fail are dropped; the sync completes."""
    path = "requests/add/mixed.yaml"
    head = world.open_pull(2, {path: request_yaml("org/mixed")})
    comment_writes = rf"/repos/{REPO}/issues/(2/)?comments"
    world.github.fail("PATCH", comment_writes, 502, times=2)
    world.github.fail("PATCH", comment_writes, 403, headers=rate_limit_headers(reset_in=0))
    world.github.fail("PATCH", comment_writes, 502, times=4)  # one whole edit gives up after its 4 attempts
    assert world.run(MAX_ROW_ERROR_RATE="0.6", AUTO_MERGE="true") == 0
    final = world.comment(2, path)
    assert "✅ synced" in final and "| row errors | 4 |" in final
    assert "[undecodable]" in final and "[non_finite]" in final and "--errors" in final
    assert comments.RETRY_HINT.format(name="org__mixed__split_train__rev_main") in final, "how to retry them"
    assert world.github.pulls[2].merged and world.github.pulls[2].merge_sha == head
    assert "retrying" in world.caplog.text and "goes on without this comment update" in world.caplog.text
    world.assert_no_canary()


def test_a_driver_failure_reaches_the_pr_from_the_dataset_status_not_from_its_output(world: World,
                                                                                   tmp_path: Path) -> None:
    path = "requests/add/mixed.yaml"
    world.open_pull(15, {path: request_yaml("org/mixed")})
    assert world.run(MAX_ROW_ERROR_RATE="0.1") == 1
    status = read_status(next((tmp_path / "datasets").iterdir()))
    assert status is not None and status.state == "failed" and "4 of 8 rows failed (limit 10%)" in status.error
    assert status.error in world.comment(15, path), "the comment quotes the error the driver recorded"
    world.assert_no_canary()


class _SilentFailure(LocalDriver):
    """A driver that prints an error line and exits 1 without recording anything."""

    def start(self, root: Path, request: Path, **facts: Any) -> _ProcessRun:
        command = [sys.executable, "-c", "print('error: made up'); raise SystemExit(1)"]
        return _ProcessRun(subprocess.Popen(command, text=True, stdout=subprocess.PIPE), [])


def test_a_driver_that_records_no_outcome_is_reported_by_its_exit_status(world: World) -> None:
    path = "requests/add/calls.yaml"
    world.open_pull(16, {path: request_yaml("org/calls")})
    assert world.run(driver=_SilentFailure([])) == 1
    final = world.comment(16, path)
    assert "exit status 1 before it recorded an outcome" in final and "made up" not in final
    world.assert_no_canary()


def _auto_merges(world: World, number: int) -> int:
    return sum(1 for method, path, body in world.github.requests
               if method == "POST" and path == "/graphql" and "enablePullRequestAutoMerge" in body)


def test_a_rerun_after_success_says_synced_and_repeats_no_merge_and_no_slack_message(world: World) -> None:
    """GitHub's "Re-run jobs" (or a restarted runner) after the sync succeeded: the copy is complete at this commit."""
    path = "requests/add/calls-again.yaml"
    world.open_pull(31, {path: request_yaml("org/calls")})
    world.github.allow_auto_merge = world.github.required_check_running = True
    assert world.run(AUTO_MERGE="true") == 0
    first = world.comment(31, path)
    slack, merges = list(world.slack.messages), _auto_merges(world, 31)
    assert "✅ synced" in first and merges == 1
    assert world.run(AUTO_MERGE="true") == 0
    again = world.comment(31, path)
    assert "✅ synced" in again and "| rows | 12 |" in again and "Already complete at this commit" in again
    assert world.slack.messages == slack and _auto_merges(world, 31) == merges
    world.assert_no_canary()


def test_a_push_that_changes_how_a_complete_copy_is_made_is_not_called_already_complete(world: World) -> None:
    path = "requests/add/calls-columns.yaml"
    world.open_pull(36, {path: request_yaml("org/calls")})
    assert world.run() == 0
    world.open_pull(36, {path: request_yaml("org/calls", text_column="speaker_id")}, action="synchronize")
    assert world.run() == 1
    final = world.comment(36, path)
    assert "❌ failed" in final and "--restart" in final and "Already complete" not in final
    world.assert_no_canary()


class _EndedRun(LocalDriver):
    """A driver whose earlier run of this dataset had already ended, successfully, when the job re-attached to it."""

    def attach(self, dataset_name: str, sha: str | None) -> _ProcessRun:
        return _ProcessRun(subprocess.Popen([sys.executable, "-c", "pass"], text=True, stdout=subprocess.PIPE), [])


def test_a_run_re_attached_to_a_driver_that_already_succeeded_reports_it_synced(world: World) -> None:
    path = "requests/add/calls-attached.yaml"
    world.open_pull(32, {path: request_yaml("org/calls")})
    assert world.run() == 0
    assert world.run(driver=_EndedRun([])) == 0
    final = world.comment(32, path)
    assert "✅ synced" in final and "| rows | 12 |" in final and "before it recorded" not in final
    world.assert_no_canary()


def test_a_rerun_after_a_removal_says_removed_and_does_not_fail(world: World, tmp_path: Path) -> None:
    world.open_pull(33, {"requests/add/calls.yaml": request_yaml("org/calls")})
    assert world.run() == 0
    path = "requests/remove/calls-gone.yaml"
    world.open_pull(34, {path: "hf_id: org/calls\nreason: no longer needed\n"})
    assert world.run() == 0
    slack = list(world.slack.messages)
    assert world.run() == 0, world.comment(34, path)
    final = world.comment(34, path)
    assert "🗑️ removed" in final and "earlier run of this job at this commit" in final
    assert world.slack.messages == slack
    world.open_pull(35, {"requests/remove/never.yaml": "hf_id: org/never\nreason: a typo\n"})
    assert world.run() == 1, "a removal of what never was here still fails"
    world.assert_no_canary()


def test_a_failing_request_gets_a_failure_comment_and_a_non_zero_exit(world: World, tmp_path: Path) -> None:
    path = "requests/add/calls-bad-split.yaml"
    world.open_pull(3, {path: request_yaml("org/calls", split="nope")})
    assert world.run(AUTO_MERGE="true") == 1
    final = world.comment(3, path)
    assert "❌ failed" in final and "nope" in final and "train" in final and "What to do" in final
    assert not world.github.pulls[3].merged
    assert not (tmp_path / "datasets").exists(), "nothing is downloaded for a request that does not resolve"
    assert "failed" in world.slack.messages[-1]
    world.assert_no_canary()


def test_a_licence_outside_the_policy_fails_the_request_with_the_verdict_and_how_to_override(world: World,
                                                                                            tmp_path: Path) -> None:
    path = "requests/add/nc.yaml"
    world.open_pull(4, {path: request_yaml("org/nc-speech")})
    assert world.run() == 1
    final = world.comment(4, path)
    assert "❌ failed" in final and "CC-BY-NC-4.0: refused (not in the allowed licences: non-commercial)" in final
    assert "add `licence_override: <why, and who checked>` to the request" in final
    assert not (tmp_path / "datasets").exists(), "nothing is downloaded for a refused licence"


def test_an_unreachable_slack_never_leaks_its_url_or_fails_the_run(world: World) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    path = "requests/add/calls-bad-split.yaml"
    world.open_pull(13, {path: request_yaml("org/calls", split="nope")})
    assert world.run(SLACK_WEBHOOK_URL=closed + CANARY_SLACK_PATH) == 1
    assert "❌ failed" in world.comment(13, path)
    assert "Slack could not be reached" in world.caplog.text
    world.assert_no_canary()


def test_a_killed_driver_is_reported_and_a_rerun_resumes(world: World) -> None:
    path = "requests/add/calls.yaml"
    world.open_pull(4, {path: request_yaml("org/calls")})
    assert world.run(HUGFLOW_FAILPOINT="finalize") == 1
    failed = world.comment(4, path)
    assert "❌ failed" in failed and "SIGKILL" in failed and "resumes from the 12 rows" in failed
    world.monkeypatch.delenv("HUGFLOW_FAILPOINT")
    assert world.run() == 0, "a re-run of the job continues from the ledger"
    assert "✅ synced" in world.comment(4, path)
    world.assert_no_canary()


def test_a_second_pr_for_a_dataset_being_synced_is_told_who_holds_it(world: World, hub: HubFixture,
                                                                      tmp_path: Path) -> None:
    path = "requests/add/calls-again.yaml"
    world.open_pull(6, {path: request_yaml("org/calls")})
    from hugflow_ray.core.naming import dataset_dir_name
    from hugflow_ray.core.request import HubRef

    name = dataset_dir_name(HubRef(hf_id="org/calls"))
    with DatasetLock(tmp_path / "state", name, owner=f"PR #5 of {REPO}"):  # what PR #5's driver holds
        assert world.run() == 1
    final = world.comment(6, path)
    assert "❌ failed" in final and f"PR #5 of {REPO}" in final
    assert not (tmp_path / "datasets").exists()
    world.assert_no_canary()


def test_a_lost_race_for_the_lock_names_the_holder(world: World, tmp_path: Path) -> None:
    """Another run takes the lock between the control plane's check and the driver's start."""
    from hugflow_ray.core.naming import dataset_dir_name
    from hugflow_ray.core.request import HubRef
    lock = DatasetLock(tmp_path / "state", dataset_dir_name(HubRef(hf_id="org/calls")), owner=f"PR #5 of {REPO}")

    class RacingDriver(LocalDriver):
        def start(self, root: Path, request: Path, **facts: Any) -> _ProcessRun:
            lock.__enter__()
            return super().start(root, request, **facts)

    path = "requests/add/calls-race.yaml"
    world.open_pull(17, {path: request_yaml("org/calls")})
    try:
        assert world.run(driver=RacingDriver([])) == 1
    finally:
        lock.__exit__()
    final = world.comment(17, path)
    assert "❌ failed" in final and f"being synced or removed by PR #5 of {REPO}" in final
    assert not (tmp_path / "datasets").exists()
    world.assert_no_canary()


def test_remove_deletes_the_dataset_and_refuses_while_a_sync_holds_it(world: World, tmp_path: Path) -> None:
    world.open_pull(7, {"requests/add/calls.yaml": request_yaml("org/calls")})
    assert world.run() == 0
    dataset = next((tmp_path / "datasets").iterdir())
    path = "requests/remove/calls.yaml"
    world.open_pull(8, {path: "hf_id: org/calls\nreason: no longer needed\n"})
    with DatasetLock(tmp_path / "state", dataset.name, owner=f"PR #9 of {REPO}"):
        assert world.run() == 1
    assert "❌ failed" in world.comment(8, path) and "PR #9" in world.comment(8, path) and dataset.is_dir()
    assert world.run() == 0
    final = world.comment(8, path)
    assert "removed" in final and dataset.name in final and not dataset.exists()
    world.assert_no_canary()


def test_an_unexpected_error_fails_that_request_on_the_pr_and_the_next_one_still_runs(world: World,
                                                                                      tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "ci").write_text("a file where the staging directory goes")
    first, second = "requests/add/a-calls.yaml", "requests/add/b-bad.yaml"
    world.open_pull(14, {first: request_yaml("org/calls"), second: request_yaml("org/calls", split="nope")})
    assert world.run() == 1
    assert "unexpected error: NotADirectoryError" in world.comment(14, first)
    assert "❌ failed" in world.comment(14, second) and "nope" in world.comment(14, second)
    assert "Traceback" in world.caplog.text
    world.assert_no_canary()


def test_every_comment_describes_the_prs_current_head_through_approval_and_a_new_push(world: World) -> None:
    path, fork = "requests/add/fork-calls.yaml", "mallory/datasets"
    first = world.open_pull(21, {path: request_yaml("org/calls")}, head_repo=fork)
    assert world.run() == 1
    assert "comes from a fork" in world.pr_comment(21) and first[:12] in world.pr_comment(21)
    world.event(21, first, action="labeled", head_repo=fork, labels=["sync-approved"], label="sync-approved")
    assert world.run() == 0
    assert "comes from a fork" not in world.pr_comment(21) and "synced for the head commit" in world.pr_comment(21)
    synced = world.comment(21, path)
    assert "✅ synced" in synced and first[:12] in synced
    second = world.open_pull(21, {path: request_yaml("org/calls", split="train")}, action="synchronize",
                             head_repo=fork, labels=["sync-approved"])
    assert world.run() == 1 and world.github.pulls[21].labels == []
    stale = world.comment(21, path)
    assert "⚠️ outdated" in stale and second[:12] in stale and first[:12] not in stale
    assert "may merge" not in stale
    world.assert_no_canary()


def test_auto_merge_uses_githubs_auto_merge_at_the_synced_head(world: World) -> None:
    path = "requests/add/calls-auto.yaml"
    head = world.open_pull(22, {path: request_yaml("org/calls")})
    world.github.allow_auto_merge = world.github.required_check_running = True
    assert world.run(AUTO_MERGE="true") == 0
    pull = world.github.pulls[22]
    assert pull.auto_merge == {"method": "MERGE", "head": head} and not pull.merged
    assert "auto-merge on" in world.pr_comment(22)
    world.assert_no_canary()


def test_a_refused_direct_merge_says_what_the_repository_must_allow(world: World) -> None:
    path = "requests/add/calls-manual.yaml"
    world.open_pull(23, {path: request_yaml("org/calls")})
    world.github.required_check_running = True  # auto-merge not allowed, and this job is a required check
    assert world.run(AUTO_MERGE="true") == 0, "the data synced: the merge is the operator's then"
    assert not world.github.pulls[23].merged
    comment = world.pr_comment(23)
    assert "synced, not merged" in comment and "is in progress" in comment and "Allow auto-merge" in comment
    world.assert_no_canary()


def test_a_pr_that_touches_code_is_refused_without_reading_its_files(world: World) -> None:
    world.open_pull(10, {"requests/add/x.yaml": request_yaml("org/calls"), "hugflow_ray/evil.py": "import os\n"})
    assert world.run() == 1
    (body,) = world.github.comments_on(10)
    assert "outside `requests/`" in body and "hugflow_ray/evil.py" in body
    assert not [p for m, p, _ in world.github.requests if "/contents/" in p]
    world.assert_no_canary()


def test_a_fork_pr_is_refused_without_approval_and_a_new_push_withdraws_it(world: World) -> None:
    files = {"requests/add/fork.yaml": request_yaml("org/calls")}
    world.open_pull(11, files, head_repo="mallory/datasets")
    assert world.run() == 1
    assert "fork" in world.github.comments_on(11)[0] and "`sync-approved`" in world.github.comments_on(11)[0]
    world.open_pull(12, files, action="synchronize", head_repo="mallory/datasets", labels=["sync-approved"])
    assert world.run() == 1
    assert world.github.pulls[12].labels == [], "the approval was for an older commit: it comes off"
    assert "withdrawn" in world.github.comments_on(12)[0]
    assert not [p for m, p, _ in world.github.requests if "/contents/" in p]
    world.assert_no_canary()


def test_ci_mode_outside_actions_or_without_a_pr_is_a_clear_error(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CIError, match="inside GitHub Actions"):
        control.load_event(load_settings())
    event = tmp_path / "push.json"
    event.write_text(json.dumps({"ref": "refs/heads/main"}))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(event))
    monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
    with pytest.raises(CIError, match="no pull request"):
        control.load_event(load_settings())
    result = subprocess.run([sys.executable, "-m", "hugflow_ray", "sync", "--ci-mode"], capture_output=True,
                            text=True, env=dict(os.environ))
    assert result.returncode == 1 and "has no pull request" in result.stderr


def test_the_token_falls_back_to_gh_auth_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gh = tmp_path / "bin" / "gh"
    gh.parent.mkdir()
    gh.write_text('#!/bin/sh\n[ "$1 $2" = "auth token" ] && echo token-from-gh\n')
    gh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{gh.parent}{os.pathsep}{os.environ['PATH']}")
    assert control.github_token(load_settings()) == "token-from-gh"
    assert control.github_token(load_settings(github_token="set")) == "set"
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(CIError, match="GITHUB_TOKEN"):
        control.github_token(load_settings())


# ---- the gate and the comment, pure ----------------------------------------------------------------------

def _pull(head_repo: str = REPO, labels: tuple[str, ...] = (), head: str = "h" * 40, state: str = "open") -> PullFacts:
    return PullFacts(number=1, head_sha=head, base_sha="b" * 40, head_repo=head_repo, base_repo=REPO,
                     labels=labels, state=state, merged=False)


@pytest.mark.parametrize(
    ("event", "pull", "allowed"),
    [
        (gate.EventFacts(1, "opened", "h" * 40), _pull(), True),
        (gate.EventFacts(1, "opened", "h" * 40), _pull("fork/x"), False),
        (gate.EventFacts(1, "labeled", "h" * 40, "sync-approved"), _pull("fork/x", ("sync-approved",)), True),
        (gate.EventFacts(1, "labeled", "h" * 40, "other"), _pull("fork/x", ("sync-approved", "other")), False),
        (gate.EventFacts(1, "labeled", "h" * 40, "sync-approved"),
         _pull("fork/x", ("sync-approved",), head="n" * 40), False),  # pushed again after the label
        (gate.EventFacts(1, "synchronize", "h" * 40), _pull("fork/x", ("sync-approved",)), False),
        (gate.EventFacts(1, "opened", "h" * 40), _pull(None), False),  # type: ignore[arg-type]
        (gate.EventFacts(1, "reopened", "h" * 40), _pull(state="closed"), False),
    ],
    ids=["same-repo", "fork", "fork-approved-at-this-sha", "fork-other-label", "fork-approved-older-sha",
         "fork-synchronize-with-stale-label", "deleted-fork", "closed-meanwhile"],
)
def test_the_gate_syncs_forks_only_when_approved_at_the_exact_head(event: gate.EventFacts, pull: PullFacts,
                                                                    allowed: bool) -> None:
    decision = gate.gate(event, pull, [ChangedFile("requests/add/a.yaml", "added")], "sync-approved")
    assert (decision.refusal is None) is allowed
    assert [r.path for r in decision.requests] == (["requests/add/a.yaml"] if allowed else [])


@pytest.mark.parametrize(
    ("changed", "refusal", "requests"),
    [
        ([ChangedFile("requests/add/a.yaml", "added"), ChangedFile("requests/remove/b.yml", "modified")], None,
         ["requests/remove/b.yml", "requests/add/a.yaml"]),
        ([ChangedFile("requests/add/a.yaml", "removed"), ChangedFile("requests/README.md", "added")], None, []),
        ([ChangedFile("requests/add/new.yaml", "renamed", previous_path="docs/old.yaml")], "outside", []),
        ([ChangedFile("requests/add/../../setup.py", "added")], "outside", []),
        ([ChangedFile(".github/workflows/x.yml", "modified")], "outside", []),
        ([ChangedFile("requests/add/sub/a.yaml", "added")], "subdirectory", []),
    ],
    ids=["add-and-remove", "deleted-and-non-yaml-ignored", "rename-from-outside", "dot-dot", "workflow", "nested"],
)
def test_the_gate_runs_only_request_files(changed: list[ChangedFile], refusal: str | None,
                                          requests: list[str]) -> None:
    decision = gate.gate(gate.EventFacts(1, "opened", "h" * 40), _pull(), changed, "sync-approved")
    assert (refusal is None and decision.refusal is None) or (refusal and refusal in (decision.refusal or ""))
    assert [r.path for r in decision.requests] == requests


def test_long_comments_are_cut_under_githubs_limit_keeping_the_marker() -> None:
    marker = comments.request_marker("requests/add/a.yaml")
    body = fit_comment(comments.failed("requests/add/a.yaml", "x" * 200_000, "fix it") + "\n" + "y" * 100_000
                       + f"\n\n{marker}")
    assert len(body) <= COMMENT_LIMIT and body.endswith(marker) and "cut to fit" in body


# ---- Slack, both ways of configuring it -------------------------------------------------------------------

def test_slack_posts_escaped_text_by_webhook_or_bot_token_and_nothing_when_unconfigured() -> None:
    from hugflow_ray.adapters.slack import Slack

    text = "<!channel> synced `a&b` <http://evil|click>"
    with SlackReceiver() as receiver:
        assert Slack(load_settings(slack_webhook_url=receiver.url + CANARY_SLACK_PATH)).post(text)
        bot = load_settings(slack_bot_token="xoxb-canary-0123456789", slack_channel="#datasets",
                            slack_api_url=receiver.url + "/api/")
        assert Slack(bot).post(text)
        unconfigured = Slack(load_settings())
        assert not unconfigured.configured and not unconfigured.post(text)
        no_channel = Slack(load_settings(slack_bot_token="xoxb-canary-0123456789"))
        assert not no_channel.configured
    escaped = "&lt;!channel&gt; synced `a&amp;b` &lt;http://evil|click&gt;"
    assert receiver.messages == [escaped, escaped]
    assert "channel=%23datasets" in receiver.bodies[1] or '"channel": "#datasets"' in receiver.bodies[1]
