"""``hugflow sync --ci-mode``: the control plane of the pull-request workflow.

It reads the Actions event, asks GitHub what the PR changes, decides (:func:`hugflow_ray.gitops.gate.gate`) what
may run, and for each request file keeps one living PR comment (and Slack) up to date. The data plane is a
separate driver, ``hugflow local-sync``, started without the GitHub and Slack credentials: a child process on this
host (:mod:`hugflow_ray.drivers.local`), or, with ``RAY_ADDRESS=http(s)://<head>:8265``, a Ray job on the
cluster's storage node (:mod:`hugflow_ray.drivers.ray_job`). The two talk only through the progress file, the
ledger and the dataset's status (the runner shares the storage node's disk), and the job's own state.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from hugflow_ray.adapters.github import PullRequestClient
from hugflow_ray.adapters.hub import Hub
from hugflow_ray.adapters.slack import Slack
from hugflow_ray.copies import store
from hugflow_ray.copies.layout import StoreLayout
from hugflow_ray.copies.ledger import Ledger, LedgerMismatchError
from hugflow_ray.copies.locks import DatasetLock
from hugflow_ray.copies.status import read_status_or_none, status_version
from hugflow_ray.core.naming import dataset_dir_name
from hugflow_ray.core.plan import Plan
from hugflow_ray.core.records import DatasetState, DatasetStatus
from hugflow_ray.core.request import AddRequest, LocalRef, RemoveRequest, RequestKind, parse_request
from hugflow_ray.drivers.base import Driver, DriverRun, default_driver
from hugflow_ray.errors import CIError, GitHubError, HugflowError, LicenceError, RequestError
from hugflow_ray.gitops import comments, gate
from hugflow_ray.pipeline.download import source_peak
from hugflow_ray.pipeline.plan import check_licence, licence_verdict, make_plan
from hugflow_ray.pipeline.progress import read_progress
from hugflow_ray.settings import Settings
from hugflow_ray.utils.humanize import duration, human_size
from hugflow_ray.utils.redact import redact

log = logging.getLogger(__name__)

MILESTONES = (25, 50, 75)
FIX_THE_REQUEST = "fix the request file in this PR and push; the sync runs again on the new commit."
RETRY_GITHUB = "re-run the job once GitHub answers again."
CHECK_THE_REMOVAL = ("if a sync of this dataset is running, wait for it and re-run this job; otherwise check the "
                     "dataset name (`hugflow status`).")


def load_event(settings: Settings) -> gate.EventFacts:
    """The pull request the Actions event is about.

    Raises:
        CIError: not in GitHub Actions, no event file, or no pull request in the event.
    """
    if not settings.github_actions or settings.github_event_path is None:
        raise CIError("--ci-mode runs inside GitHub Actions (GITHUB_ACTIONS=true, GITHUB_EVENT_PATH set); "
                      "on this machine use `hugflow local-sync FILE`")
    if not settings.github_repository:
        raise CIError("GITHUB_REPOSITORY is not set; Actions sets it to owner/name")
    try:
        event = json.loads(settings.github_event_path.read_text())
    except (OSError, ValueError) as e:
        raise CIError(f"cannot read the event file {settings.github_event_path} ({e})") from None
    pull = event.get("pull_request") if isinstance(event, dict) else None
    if not isinstance(pull, dict) or not isinstance(pull.get("number"), int):
        raise CIError(f"the event in {settings.github_event_path} has no pull request; the dataset-sync workflow "
                      "runs on pull_request_target events")
    label = event.get("label")
    return gate.EventFacts(number=pull["number"], action=str(event.get("action", "")), head_sha=pull["head"]["sha"],
                             label=label.get("name") if isinstance(label, dict) else None)


def github_token(settings: Settings) -> str:
    """``GITHUB_TOKEN``, else what ``gh auth token`` prints."""
    if settings.github_token is not None:
        return settings.github_token.get_secret_value()
    gh = shutil.which("gh")
    if gh is not None:
        result = subprocess.run([gh, "auth", "token"], capture_output=True, text=True, timeout=30, check=False)
        if result.returncode == 0 and result.stdout.strip():
            return result.stdout.strip()
    raise CIError("no GitHub token: set GITHUB_TOKEN (the workflow passes github.token) or log in with `gh auth login`")


@dataclass
class _Reporter:
    """Where a request's news goes: its living PR comment and Slack. Neither can fail the sync."""

    github: PullRequestClient
    slack: Slack
    secrets: list[str]
    prefix: str
    head_sha: str
    where: str | None = None  # the running request's Ray job, named in its comments

    def comment(self, marker: str, body: str, *, create: bool = True) -> None:
        """Create or edit the comment with ``marker`` (only edit, when ``create`` is False); it always says which
        commit of the PR it describes (and which Ray job runs it)."""
        job = f"\n\n{self.where}" if self.where and marker != comments.PR_MARKER else ""
        body = redact(f"{body}{job}\n\n{comments.head_line(self.head_sha)}", self.secrets)
        try:
            if create:
                self.github.upsert_comment(marker, body)
            else:
                self.github.edit_comment_if_present(marker, body)
        except GitHubError as e:
            log.warning("%s; the sync goes on without this comment update", e)

    def body(self, marker: str) -> str | None:
        """The comment with ``marker`` as it stands, when there is one and GitHub says so."""
        try:
            return self.github.comment_body(marker)
        except GitHubError as e:
            log.warning("%s; the comment's earlier state is not known", e)
            return None

    def outdate(self, paths: set[str], why: str) -> None:
        """Mark the living comments of requests other than ``paths`` as describing an earlier commit."""
        try:
            markers = self.github.markers(comments.REQUEST_MARKER)
        except GitHubError as e:
            log.warning("%s; earlier request comments are left as they are", e)
            return
        for marker in markers:
            path = comments.REQUEST_MARKER.fullmatch(marker)
            if path is not None and path.group(1) not in paths:
                self.comment(marker, comments.outdated(path.group(1), why), create=False)

    def notify(self, text: str) -> None:
        if self.slack.configured:
            self.slack.post(redact(f"{self.prefix} {text}", self.secrets))


def pull_key(settings: Settings, number: int) -> str:
    """How a Ray job's metadata names the PR it syncs for."""
    return f"{settings.github_repository}#{number}"


def _stop_jobs(settings: Settings, reporter: _Reporter, pull: str) -> int:
    """A closed PR: stop its Ray jobs (their ledgers keep what was written; a reopened PR resumes)."""
    if not settings.ray_job_server:
        log.info("%s was closed; syncs run on this runner end with the job that runs them", pull)
        return 0
    from hugflow_ray.drivers.ray_job import RayJobs

    stopped = RayJobs(settings).stop_jobs(hugflow_pr=pull)
    for job_id in stopped:
        log.info("stopped Ray job %s: %s was closed", job_id, pull)
    if stopped:
        reporter.notify(f"closed: stopped {len(stopped)} Ray job(s) ({', '.join(stopped)}); what they wrote is kept")
    else:
        log.info("%s was closed; no Ray job of it is running", pull)
    return 0


def run(settings: Settings, *, driver: Driver | None = None, github: PullRequestClient | None = None,
        poll_seconds: float = 1.0) -> int:
    """Sync what the PR asks for; 0 when every request succeeded (or there was nothing to do), else 1."""
    event = load_event(settings)
    assert settings.github_repository is not None
    if github is None:
        github = PullRequestClient(api_url=settings.github_api_url, token=github_token(settings),
                                   repository=settings.github_repository, number=event.number)
    secrets = settings.secrets()
    reporter = _Reporter(github, Slack(settings), secrets, f"[{settings.github_repository}#{event.number}]",
                         event.head_sha)
    if event.action == "closed":
        return _stop_jobs(settings, reporter, pull_key(settings, event.number))
    pull = github.facts()
    decision = gate.gate(event, pull, github.changed_files(), settings.sync_approval_label)
    if decision.drop_approval:
        try:
            github.remove_label(settings.sync_approval_label)
        except GitHubError as e:
            log.warning("%s", e)
    if decision.refusal is not None:
        log.error("not synced: %s", decision.refusal)
        reporter.comment(comments.PR_MARKER, comments.refused(decision.refusal))
        reporter.outdate(set(), "The head commit is not synced: see the PR's hugflow-ray comment for why.")
        return 1
    reporter.comment(comments.PR_MARKER, comments.gate_passed(), create=False)  # an earlier refusal no longer holds
    reporter.outdate({r.path for r in decision.requests}, "The head commit no longer changes this request file.")
    for path in decision.ignored:
        log.info("%s: not a request to run (deleted, or not a YAML file under requests/add|remove)", path)
    if not decision.requests:
        log.info("#%d changes no request files: nothing to sync", event.number)
        return 0
    job = _Job(settings, event, github, reporter, driver or default_driver(settings), poll_seconds)
    outcomes = [job.run(r) for r in decision.requests]
    if Outcome.FAILED in outcomes:
        return 1
    if settings.auto_merge:
        if Outcome.DONE in outcomes:
            job.merge()
        else:  # a re-run after success: the run that synced them merged (or said why not)
            log.info("#%d: every request was already done at this commit; merging is left to the run that did it",
                     event.number)
    return 0


class Outcome(Enum):
    """How one request of a PR ended."""

    DONE = "done"  # synced or removed by this run
    ALREADY_DONE = "already done"  # an earlier run of the job did it at this commit: nothing to do, nothing announced
    FAILED = "failed"


class _Job:
    """The requests of one PR, one after another."""

    def __init__(self, settings: Settings, event: gate.EventFacts, github: PullRequestClient,
                 reporter: _Reporter, driver: Driver, poll_seconds: float) -> None:
        self.settings, self.event, self.github, self.reporter = settings, event, github, reporter
        self.layout = StoreLayout.of(settings)
        self.driver, self.poll_seconds = driver, poll_seconds
        self.owner = f"PR #{event.number} of {settings.github_repository}"

    def run(self, request: gate.RequestFile) -> Outcome:
        """One request file; an unexpected error fails it on the PR (then the next request runs)."""
        try:
            return self.remove(request.path) if request.kind is RequestKind.REMOVE else self.add(request.path)
        except Exception as e:  # noqa: BLE001 - reported on the PR and in the log with its traceback
            log.exception("%s: unexpected error", request.path)
            return self._fail(request.path, f"unexpected error: {type(e).__name__}: {e}",
                              "this is a hugflow bug or a problem of the runner host: see the job log, then re-run.")

    def _load(self, path: str, kind: RequestKind) -> tuple[bytes, AddRequest | RemoveRequest]:
        """The request file at the head commit, read as data and parsed strictly."""
        data = self.github.file_at(path, self.event.head_sha)
        request = parse_request(data, request_path=Path(path), kind=kind)
        assert isinstance(request, AddRequest | RemoveRequest)
        if isinstance(request.dataset, LocalRef):
            raise RequestError("a pull request may only request Hub datasets", field="path", request_path=Path(path),
                               fix="Use 'hf_id'; local datasets are synced on the server with `hugflow local-sync`.")
        return data, request

    def _fail(self, path: str, error: str, hint: str) -> Outcome:
        log.error("%s: %s", path, error)
        self.reporter.comment(comments.request_marker(path), comments.failed(path, error, hint))
        self.reporter.notify(f"`{path}` failed: {error}")
        return Outcome.FAILED

    def add(self, path: str) -> Outcome:
        marker = comments.request_marker(path)
        self.reporter.comment(marker, comments.starting(path))
        try:
            data, request = self._load(path, RequestKind.ADD)
            assert isinstance(request, AddRequest)
            plan = make_plan(request, hub=Hub.from_settings(self.settings))
            verdict = licence_verdict(plan, self.settings)
            check_licence(plan, verdict)
        except HugflowError as e:
            return self._fail(path, str(e), _what_to_do(e, otherwise=FIX_THE_REQUEST))
        run = self.driver.attach(plan.identity.name, plan.identity.sha)  # a re-run of the job follows it
        holder = None if run else DatasetLock(self.settings.state_dir, plan.identity.name, owner=self.owner).held_by()
        if holder is not None:
            return self._fail(path, f"{plan.identity.name} is being synced or removed by {holder}",
                              "wait until that finishes, then re-run this job (or close this PR if it asks for "
                              "the same dataset).")
        view = self._view(plan, verdict.line() if verdict else None)
        if run is None and (done := self._complete(plan)) is not None and self._made_as_planned(plan):  # a re-run
            log.info("%s: %s is already complete at %s: nothing to do", path, plan.identity.name, plan.identity.sha)
            return self._report_done(path, plan, view, done, 0.0, already=True)
        self.reporter.comment(marker, comments.planned(path, view))
        self.reporter.notify(f"syncing `{plan.identity.source}` ({view.rows or '?'} rows, "
                             f"{human_size(view.download_bytes or 0)} to download) from `{path}`")
        started = time.monotonic()
        before = self._status_versions(plan.identity.name)
        if run is None:
            root = self.layout.ci_run(self.event.number, self.event.head_sha)
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(data)
            run = self.driver.start(root, Path(path), owner=self.owner, expect_sha=plan.identity.sha,
                                    dataset_name=plan.identity.name,
                                    metadata={"hugflow_pr": pull_key(self.settings, self.event.number),
                                              "hugflow_request": path})
        else:
            log.info("%s: following the run an earlier attempt of this job started (%s)", path, run.where)
        self.reporter.where = run.where
        try:
            self._follow(run, path, plan, view)
            code = run.wait()
            return self._finish(path, plan, view, code, before, time.monotonic() - started, run)
        finally:
            self.reporter.where = None

    def _view(self, plan: Plan, licence: str | None) -> comments.PlanView:
        return comments.PlanView(
            identity=plan.identity, rows=plan.rows, download_bytes=plan.download_bytes,
            target=str(self.layout.copy(plan.identity.name).root), audio_column=plan.audio_column,
            text_column=plan.text_column, licence=licence,
            source_peak_bytes=source_peak(plan, concurrency=self.settings.max_concurrent_downloads,
                                          keep=self.settings.keep_sources),
            keep_sources=self.settings.keep_sources,
        )

    def _follow(self, run: DriverRun, path: str, plan: Plan, view: comments.PlanView) -> None:
        """Until the driver exits: each new progress file becomes a comment edit; milestones go to Slack."""
        marker = comments.request_marker(path)
        seen = read_progress(self.settings.state_dir, plan.identity.name)  # an earlier run's, if any
        announced = set()
        while run.poll() is None:
            time.sleep(self.poll_seconds)
            progress = read_progress(self.settings.state_dir, plan.identity.name)
            if not progress or progress == seen or progress.status is not DatasetState.SYNCING:
                continue
            seen = progress
            done, total = progress.rows_done, progress.rows_total
            self.reporter.comment(marker, comments.progress(path, view, done, total, progress.rows_per_second,
                                                          progress.eta_seconds, progress.row_errors))
            percent = 100 * done / total if total else 100
            for milestone in MILESTONES:
                if percent >= milestone and milestone not in announced:
                    announced.add(milestone)
                    if milestone == max(m for m in MILESTONES if percent >= m):
                        self.reporter.notify(f"`{plan.identity.source}`: {milestone} % ({done:,} of {total:,} rows)")

    def _complete(self, plan: Plan) -> DatasetStatus | None:
        """The copy's status when it is complete at the plan's commit, else None."""
        status = read_status_or_none(self.layout.copy(plan.identity.name).root)
        if status is None or status.state is not DatasetState.COMPLETE or status.identity.sha != plan.identity.sha:
            return None
        return status

    def _made_as_planned(self, plan: Plan) -> bool:
        """Whether the copy's ledger was made with exactly this plan's fingerprint (columns, encoder...): a request
        that changed them is the driver's to refuse (``--restart``), never reported as already complete."""
        try:
            return Ledger(self.layout.copy(plan.identity.name).root).recorded_fingerprint() == plan.fingerprint(
                self.settings.encoder)
        except LedgerMismatchError:
            return False

    def _status_folders(self, name: str) -> tuple[Path, Path]:
        """Where a sync of ``name`` records its outcome: its next version's folder (a copy at another commit is
        replaced by one built beside it), and the copy's."""
        return self.layout.next_copy(name).root, self.layout.copy(name).root

    def _status_versions(self, name: str) -> list[tuple[int, int] | None]:
        return [status_version(folder) for folder in self._status_folders(name)]

    def _finish(self, path: str, plan: Plan, view: comments.PlanView, code: int,
                before: list[tuple[int, int] | None], seconds: float, run: DriverRun) -> Outcome:
        """Report the driver's outcome as the copy's status file records it (the state and the error), not its output:
        a driver that exits 0 leaving the copy complete at the plan's commit succeeded, whether it recorded that
        now or a run before it did (a job that ended before this one re-attached to it)."""
        done = self._complete(plan) if code == 0 else None
        if done is None:
            folders = self._status_folders(plan.identity.name)
            changed = [f for f, now, was in zip(folders, self._status_versions(plan.identity.name), before,
                                                strict=True) if now != was]
            recorded = bool(changed)
            status = read_status_or_none(changed[0]) if changed else None
            progress = read_progress(self.settings.state_dir, plan.identity.name)
            rows = progress.rows_done if progress else None
            resume = f" It resumes from the {rows:,} rows finished so far." if rows else ""
            holder = None if recorded else DatasetLock(self.settings.state_dir, plan.identity.name,
                                                       owner=self.owner).held_by()
            return self._fail(path, _driver_error(code, status, plan.identity.name, holder, run.ended()),
                              f"read the job log for the cause; fix it and re-run the job.{resume}")
        return self._report_done(path, plan, view, done, seconds, already=False)

    def _report_done(self, path: str, plan: Plan, view: comments.PlanView, status: DatasetStatus, seconds: float, *,
                     already: bool) -> Outcome:
        """The request's comment says synced; Slack hears of it only when this run synced it."""
        dataset_dir = self.layout.copy(plan.identity.name).root
        errors = store.row_errors(self.layout, plan.identity.name) if status.row_errors else []
        link = self.layout.processed_link(plan.identity.name)
        result = comments.ResultView(
            dataset_dir=str(dataset_dir), link=str(link) if link.is_symlink() else None, rows=status.rows_done,
            row_errors=status.row_errors,
            first_errors=tuple(f"row {e.row_id}: [{e.error_code}] {e.error}"
                               for e in errors[: comments.ROW_ERRORS_LISTED]),
            size_bytes=store.copy_size(dataset_dir, status), seconds=seconds, already_complete=already,
        )
        self.reporter.comment(comments.request_marker(path), comments.succeeded(path, view, result))
        if already:
            return Outcome.ALREADY_DONE
        self.reporter.notify(f"`{plan.identity.source}` synced: {result.rows:,} rows, {result.row_errors:,} row "
                             f"errors, {human_size(result.size_bytes)} in {duration(seconds)}")
        return Outcome.DONE

    def remove(self, path: str) -> Outcome:
        marker = comments.request_marker(path)
        earlier = self.reporter.body(marker)
        self.reporter.comment(marker, comments.starting(path))
        try:
            _, request = self._load(path, RequestKind.REMOVE)
            name = dataset_dir_name(request.dataset)
            if (earlier is not None and comments.says_removed(earlier, path, self.event.head_sha)
                    and not os.path.lexists(self.layout.copy(name).root)):  # a re-run of the job after success
                self.reporter.comment(marker, comments.already_removed(path, name))
                return Outcome.ALREADY_DONE
            report = store.remove(request, self.layout, owner=self.owner)
        except HugflowError as e:
            return self._fail(path, str(e), _what_to_do(e, otherwise=CHECK_THE_REMOVAL))
        self.reporter.comment(marker, comments.removed(path, report.dataset_name, report.removed))
        self.reporter.notify(f"`{report.dataset_name}` removed ({path})")
        return Outcome.DONE

    def merge(self) -> None:
        """AUTO_MERGE: GitHub's own auto-merge (it merges when the required checks pass, this job's among them);
        where the repository does not allow it, or the PR can merge right away, a direct merge at the synced head."""
        try:
            self.github.enable_auto_merge(self.event.head_sha)
        except GitHubError as e:
            log.info("auto-merge not enabled (%s); merging directly", e)
        else:
            log.info("auto-merge enabled for #%d at %s", self.event.number, self.event.head_sha)
            self.reporter.comment(comments.PR_MARKER, comments.auto_merge_on())
            self.reporter.notify("every request succeeded: auto-merge is on (AUTO_MERGE)")
            return
        try:
            self.github.merge(self.event.head_sha)
        except GitHubError as e:
            log.warning("%s", e)
            self.reporter.comment(comments.PR_MARKER, comments.not_merged(str(e)))
            return
        log.info("merged #%d (AUTO_MERGE)", self.event.number)
        self.reporter.notify("every request succeeded: merged (AUTO_MERGE)")


def _driver_error(code: int, status: DatasetStatus | None, name: str, holder: str | None, ended: str | None) -> str:
    """Why a driver failed: the error its status records, else who holds the dataset's lock, else how it ended."""
    if status is not None and status.state is DatasetState.FAILED and status.error:
        return status.error
    if holder is not None:
        return f"{name} is being synced or removed by {holder}"
    if ended is not None:
        return ended
    if code < 0:
        return f"the sync process was killed by {signal.Signals(-code).name}"
    return f"the sync process ended with exit status {code} before it recorded an outcome"


def _what_to_do(error: HugflowError, *, otherwise: str) -> str:
    """The PR comment's next step for an error: GitHub down, a bad request file, or ``otherwise``."""
    if isinstance(error, GitHubError):
        return RETRY_GITHUB
    if isinstance(error, RequestError):
        return FIX_THE_REQUEST
    if isinstance(error, LicenceError):
        return ("check the dataset's licence; if it may be used here anyway, add `licence_override: <why, and who "
                "checked>` to the request (it stays on record in git), or widen ALLOWED_LICENCES on the server.")
    return otherwise
