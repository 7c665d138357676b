"""The data-plane driver as a Ray job: ``hugflow local-sync`` submitted to the cluster's job server, placed on the
storage node, followed, re-attached to after the submitter was lost, and stopped.

A job is named after what it syncs: ``hugflow-<dataset>-<digest>-<attempt>``, the digest over the dataset's
directory name and its pinned commit. A submitter that finds the latest attempt still pending or running follows
it instead of starting a second one; one that finds it ended starts the next attempt, which resumes from the
ledger. The job carries the submitter's sync settings and no credential: the storage node holds its own
``HF_TOKEN`` (its unit's environment file, cluster/README.md), which the job's driver inherits there.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shlex
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.job_submission import JobStatus, JobSubmissionClient

from hugflow_ray.core.naming import dataset_dir_name
from hugflow_ray.core.request import AddRequest, LocalRef, RequestKind, load_request, parse_request
from hugflow_ray.errors import SyncError
from hugflow_ray.executors.base import STORAGE_SHARE, no_storage_node
from hugflow_ray.settings import Settings, job_environment
from hugflow_ray.utils.failpoints import FAILPOINT_VARIABLE
from hugflow_ray.utils.redact import redact, shown_url

ENDED = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
EXIT_CODES = {JobStatus.SUCCEEDED: 0, JobStatus.FAILED: 1, JobStatus.STOPPED: 1}
PREFIX = "hugflow-"
AGENT_WAIT_SECONDS = 60.0  # a head that has just started answers "no available agent, try again later" a while
_ATTEMPT = re.compile(r"-(\d+)$")


def job_base(dataset_name: str, sha: str | None) -> str:
    """The submission id of a dataset at a commit, less its attempt number: readable, and unique per both."""
    digest = hashlib.sha256(f"{dataset_name}\0{sha or 'local'}".encode()).hexdigest()[:12]
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset_name)[:48].strip("-")
    return f"{PREFIX}{readable}-{digest}"


def job_variables(settings: Settings) -> dict[str, str]:
    """A job's environment: the submitter's sync settings (:func:`hugflow_ray.settings.job_environment`, never a
    credential: the storage node holds its own), and the test hook that arms failpoints when it is set here."""
    variables = job_environment(settings)
    if FAILPOINT_VARIABLE in os.environ:
        variables[FAILPOINT_VARIABLE] = os.environ[FAILPOINT_VARIABLE]
    return variables


@dataclass(frozen=True)
class JobRequest:
    """One sync to submit: the request file (sent to the job as its working directory), its dataset and commit."""

    root: Path  # the working directory the job gets: it holds the request file
    request: Path  # the request file, relative to ``root``
    dataset_name: str
    sha: str | None
    owner: str  # who holds the dataset's lock, as others are told
    metadata: dict[str, str]


class RayJobs:
    """The cluster's job server at ``RAY_ADDRESS=http(s)://...``, with Ray's token when it has one."""

    def __init__(self, settings: Settings, *, echo: Callable[[str], None] = print) -> None:
        assert settings.ray_job_server is not None
        self.settings, self.address, self.echo = settings, settings.ray_job_server, echo
        self.shown_address = shown_url(self.address)  # what messages and links show: never a user:password@
        self.secrets = settings.secrets()
        token = settings.ray_auth_token.get_secret_value() if settings.ray_auth_token else None
        self._headers = {"Authorization": f"Bearer {token}"} if token else None
        self._client: JobSubmissionClient | None = None

    @property
    def client(self) -> JobSubmissionClient:
        if self._client is None:
            try:
                self._client = JobSubmissionClient(self.address, headers=self._headers)
            except Exception as e:  # noqa: BLE001 - Ray raises ConnectionError or RuntimeError: one line either way
                raise self._error(e) from None
        return self._client

    def _error(self, error: Exception) -> SyncError:
        text = redact(str(error).splitlines()[0] if str(error) else type(error).__name__, self.secrets)
        if "401" in text or "403" in text or "nauthorized" in text or "orbidden" in text:
            hint = "set RAY_AUTH_TOKEN to the cluster's token (and RAY_AUTH_MODE=token)"
        else:
            hint = "start the cluster's head (`systemctl start ray-head`, cluster/README.md) or fix RAY_ADDRESS"
        return SyncError(f"the Ray job server at {self.shown_address} did not answer: {text}; {hint}")

    def dashboard_link(self, job_id: str) -> str:
        return f"{self.shown_address}/#/jobs/{job_id}"

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(*args, **kwargs)
        except SyncError:
            raise
        except Exception as e:  # noqa: BLE001 - the job server's failures reach the user as one line
            raise self._error(e) from None

    def check_storage_node(self) -> None:
        """Refuse a cluster where no live node declares the storage resource: its jobs would wait for ever."""
        from ray.util.state.api import StateApiClient
        from ray.util.state.common import ListApiOptions, StateResource

        resource = self.settings.storage_resource
        try:  # the state API's client authenticates as the job client does (the token, or Ray's token file)
            nodes = StateApiClient(self.address, headers=self._headers).list(
                StateResource.NODES, options=ListApiOptions(detail=True, filters=[("state", "=", "ALIVE")]),
                raise_on_missing_output=False)
        except Exception as e:  # noqa: BLE001 - unreachable, refused, or not a Ray dashboard: one line
            raise self._error(e) from None
        if not any((_field(n, "resources_total") or {}).get(resource, 0) > 0 for n in nodes):
            raise no_storage_node(self.shown_address, resource)

    def attempts(self, base: str) -> list[tuple[int, str, JobStatus]]:
        """The jobs of ``base`` the server knows: (attempt, submission id, status), oldest first."""
        found = []
        for job in self._call("list_jobs"):
            sid = job.submission_id or ""
            if sid.startswith(base + "-") and (m := _ATTEMPT.search(sid)) and sid == f"{base}-{m.group(1)}":
                found.append((int(m.group(1)), sid, JobStatus(job.status)))
        return sorted(found)

    def attach(self, dataset_name: str, sha: str | None) -> JobRun | None:
        """The latest job of this dataset at this commit, when it is still pending or running."""
        return self._running(self.attempts(job_base(dataset_name, sha)))

    def _running(self, attempts: list[tuple[int, str, JobStatus]]) -> JobRun | None:
        if attempts and attempts[-1][2] not in ENDED:
            return JobRun(self, attempts[-1][1], attached=True)
        return None

    def submit(self, job: JobRequest) -> JobRun:
        """Follow the job of this dataset at this commit if one is running, else start the next attempt."""
        base = job_base(job.dataset_name, job.sha)
        attempts = self.attempts(base)
        if (running := self._running(attempts)) is not None:
            return running
        self.check_storage_node()
        submission_id = f"{base}-{attempts[-1][0] + 1 if attempts else 1}"
        command = ["python", "-m", "hugflow_ray", "local-sync", job.request.as_posix(), "--lock-owner", job.owner]
        if job.sha:
            command += ["--expect-sha", job.sha]
        deadline = time.monotonic() + AGENT_WAIT_SECONDS
        while True:
            try:
                self.client.submit_job(
                    entrypoint=shlex.join(command), submission_id=submission_id,
                    runtime_env={"working_dir": str(job.root), "env_vars": job_variables(self.settings)},
                    entrypoint_resources={self.settings.storage_resource: STORAGE_SHARE},
                    metadata={"hugflow_dataset": job.dataset_name, "hugflow_sha": job.sha or "", **job.metadata},
                )
            except SyncError:
                raise
            except Exception as e:  # noqa: BLE001 - a submitter that lost the race to the same id follows that job
                if "already exists" in str(e):
                    return JobRun(self, submission_id, attached=True)
                if "try again later" in str(e) and time.monotonic() < deadline:  # a head still starting its agent
                    time.sleep(1.0)
                    continue
                raise self._error(e) from None
            return JobRun(self, submission_id, attached=False)

    def start(self, root: Path, request: Path, *, owner: str, expect_sha: str | None, dataset_name: str,
              metadata: dict[str, str]) -> JobRun:
        """The control plane's driver: the request file ``root / request`` as a job."""
        return self.submit(JobRequest(root, request, dataset_name, expect_sha, owner, metadata))

    def stop_jobs(self, **metadata: str) -> list[str]:
        """Stop every pending or running hugflow job whose metadata has these values; returns their ids."""
        stopped = []
        for job in self._call("list_jobs"):
            sid = job.submission_id or ""
            meta = job.metadata or {}
            if sid.startswith(PREFIX) and JobStatus(job.status) not in ENDED and all(
                    meta.get(k) == v for k, v in metadata.items()):
                self._call("stop_job", sid)
                stopped.append(sid)
        return stopped


def _field(record: Any, name: str) -> Any:
    """A field of a state-API record (a dict, or a dataclass in some Ray versions)."""
    return record.get(name) if isinstance(record, dict) else getattr(record, name)


class JobRun:
    """A submitted job, as the control plane follows a driver: ``poll`` / ``wait`` give an exit status (0 when it
    succeeded), and its log is echoed (redacted) as it is written."""

    def __init__(self, jobs: RayJobs, job_id: str, *, attached: bool) -> None:
        self.jobs, self.job_id, self.attached = jobs, job_id, attached
        self.status: JobStatus | None = None
        self._logs = threading.Thread(target=self._tail, daemon=True, name=f"logs-{job_id}")
        self._logs.start()

    @property
    def where(self) -> str:
        """The job as a PR comment names it: its id and a link to it in the Ray dashboard."""
        return f"Ray job [`{self.job_id}`]({self.jobs.dashboard_link(self.job_id)})"

    def _tail(self) -> None:
        async def follow() -> None:
            async for chunk in self.jobs.client.tail_job_logs(self.job_id):
                for line in chunk.splitlines():
                    self.jobs.echo(f"  | {redact(line, self.jobs.secrets)}")

        try:
            asyncio.run(follow())
        except Exception as e:  # noqa: BLE001 - the log is a convenience; the job's status is what counts
            self.jobs.echo(f"  (the job's log is not followed any more: {redact(str(e), self.jobs.secrets)})")

    def poll(self) -> int | None:
        self.status = JobStatus(self.jobs._call("get_job_status", self.job_id))
        return EXIT_CODES[self.status] if self.status in ENDED else None

    def wait(self, poll_seconds: float = 1.0) -> int:
        while (code := self.poll()) is None:
            time.sleep(poll_seconds)
        self._logs.join(timeout=10)
        return code

    def ended(self) -> str:
        """How the job ended, for a failure report: stopped, or Ray's last line about it."""
        if self.status is JobStatus.STOPPED:
            return f"the {self.where} was stopped (the PR was closed, or an operator stopped it)"
        lines = (self.jobs._call("get_job_info", self.job_id).message or "").strip().splitlines()
        why = f": {redact(lines[-1], self.jobs.secrets)}" if lines else ""
        return f"the {self.where} ended {self.status.value if self.status else 'in an unknown state'}{why}"


def submit_file(file: Path, settings: Settings, *, echo: Callable[[str], None] = print) -> tuple[JobRun, Path]:
    """``hugflow submit FILE``: the request planned here (the Hub's commit pinned), then run as a job on the storage
    node, or the job of this dataset at this commit that is already running followed. Returns the job and the
    working directory made for it (the caller removes it once the job has it)."""
    from hugflow_ray.adapters.hub import Hub
    from hugflow_ray.pipeline.plan import make_plan

    request = load_request(file, kind=RequestKind.ADD)
    assert isinstance(request, AddRequest)
    as_written = parse_request(file.read_bytes(), kind=RequestKind.ADD)
    if isinstance(as_written.dataset, LocalRef) and not as_written.dataset.path.is_absolute():
        raise SyncError(f"{file}: path: a job runs on the storage node, where {as_written.dataset.path} means "
                        "nothing: give the dataset's absolute path on that node")
    if isinstance(request.dataset, LocalRef):
        name, sha = dataset_dir_name(request.dataset), None
    else:
        plan = make_plan(request, hub=Hub.from_settings(settings))
        name, sha = plan.identity.name, plan.identity.sha
    jobs = RayJobs(settings, echo=echo)
    root = Path(tempfile.mkdtemp(prefix="hugflow-job-"))
    try:
        inside = Path(file.name) if file.is_absolute() or ".." in file.parts else file
        (root / inside).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, root / inside)
        return jobs.submit(JobRequest(root, inside, name, sha, owner="hugflow submit", metadata={})), root
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
