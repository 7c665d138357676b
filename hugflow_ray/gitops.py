"""The pure core of the pull-request workflow: which PRs may sync what, and what the PR comment says.

No I/O here: :mod:`hugflow_ray.ci` feeds in the event, the PR's facts and its changed files, and posts what
these functions render.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

from hugflow_ray.github import ChangedFile, PullFacts
from hugflow_ray.units import duration, human_size

REQUEST_DIRS = {"add": "requests/add", "remove": "requests/remove"}
REQUEST_SUFFIXES = (".yaml", ".yml")
MARKER_PREFIX = "<!-- hugflow-ray:"
PR_MARKER = f"{MARKER_PREFIX}pr -->"
ROW_ERRORS_LISTED = 5


def request_marker(path: str) -> str:
    """The hidden marker that finds a request's one living comment again."""
    return f"{MARKER_PREFIX}request {path} -->"


@dataclass(frozen=True)
class EventFacts:
    """What the Actions event says: the action that fired and the commit it is about."""

    number: int
    action: str
    head_sha: str
    label: str | None = None  # the label just applied, for a ``labeled`` action


@dataclass(frozen=True)
class RequestFile:
    kind: str  # "add" | "remove"
    path: str


@dataclass(frozen=True)
class Gate:
    """The decision on a PR: the requests to run, or why none are run.

    Attributes:
        refusal: why the PR is not synced (None: it is).
        drop_approval: the approval label must come off (new commits since a maintainer applied it).
        ignored: changed files under ``requests/`` that are not requests to run (deleted, not YAML).
    """

    requests: tuple[RequestFile, ...] = ()
    refusal: str | None = None
    drop_approval: bool = False
    ignored: tuple[str, ...] = field(default_factory=tuple)


def gate(event: EventFacts, pull: PullFacts, changed: list[ChangedFile], approval_label: str) -> Gate:
    """Decide whether this PR is synced and which request files are run (security model: docs/DESIGN.md)."""
    if pull.state != "open":
        return Gate(refusal=f"this PR is {'merged' if pull.merged else pull.state}: nothing is synced for it.")
    outside = sorted({p for f in changed for p in (f.path, f.previous_path) if p and not _under(p, "requests")})
    if outside:
        listed = ", ".join(outside[:5]) + (f" and {len(outside) - 5} more" if len(outside) > 5 else "")
        return Gate(refusal=f"this PR changes files outside `requests/` ({listed}). Datasets are synced only from "
                            "PRs that change nothing but request files: move the other changes to their own PR.")
    if pull.from_fork:
        approved = event.action == "labeled" and event.label == approval_label and approval_label in pull.labels
        if not approved or pull.head_sha != event.head_sha:
            again = approval_label in pull.labels
            return Gate(
                refusal=(f"this PR comes from a fork ({pull.head_repo or 'deleted'}). "
                         + ("New commits arrived after the approval, so it was withdrawn. " if again else "")
                         + f"A maintainer reviews the request files at the head commit and then applies the "
                         f"`{approval_label}` label; that commit is then synced."),
                drop_approval=again and event.action != "labeled",
            )
    requests: list[RequestFile] = []
    ignored: list[str] = []
    misplaced: list[str] = []
    for f in changed:
        kind = next((k for k, d in REQUEST_DIRS.items() if _under(f.path, d)), None)
        if f.status == "removed" or not f.path.endswith(REQUEST_SUFFIXES) or kind is None:
            ignored.append(f.path)
        elif PurePosixPath(f.path).parent != PurePosixPath(REQUEST_DIRS[kind]):
            misplaced.append(f.path)
        else:
            requests.append(RequestFile(kind, f.path))
    if misplaced:
        return Gate(refusal=f"request files go directly in `requests/add/` or `requests/remove/`, not in a "
                            f"subdirectory: {', '.join(misplaced)}. Move them.")
    return Gate(requests=tuple(sorted(requests, key=lambda r: (r.kind != "remove", r.path))), ignored=tuple(ignored))


def _under(path: str, directory: str) -> bool:
    parts = PurePosixPath(path).parts
    return parts[: len(PurePosixPath(directory).parts)] == PurePosixPath(directory).parts and ".." not in parts


# ---- the living comment ------------------------------------------------------------------------------------

def _heading(path: str, state: str) -> str:
    return f"### hugflow-ray · `{path}` · {state}"


def starting(path: str) -> str:
    return f"{_heading(path, '⏳ starting')}\n\nValidating the request against the Hub…"


@dataclass(frozen=True)
class PlanView:
    """The plan as the PR comment shows it, before any download."""

    dataset_name: str
    source: str
    sha: str | None
    subset: str | None
    split: str
    rows: int | None
    download_bytes: int | None
    license: str | None
    target: str
    audio_column: str | None
    text_column: str | None


def _plan_lines(plan: PlanView) -> list[str]:
    rows = f"{plan.rows:,}" if plan.rows is not None else "counted after the download"
    size = human_size(plan.download_bytes) if plan.download_bytes is not None else "unknown"
    return [
        f"| dataset | `{plan.source}` |", "|---|---|",
        f"| pinned commit | `{plan.sha or 'local'}` |",
        f"| subset / split | `{plan.subset or 'default'}` / `{plan.split}` |",
        f"| rows | {rows} |",
        f"| download | {size} |",
        f"| licence | {plan.license or 'not stated on the card: check before use'} |",
        f"| columns | audio `{plan.audio_column or '—'}`, text `{plan.text_column or '—'}` |",
        f"| target | `{plan.target}` |",
    ]


def planned(path: str, plan: PlanView) -> str:
    return "\n".join([_heading(path, "📋 planned, downloading"), "", *_plan_lines(plan)])


def progress(path: str, plan: PlanView, done: int, total: int, rate: float | None, eta: float | None,
             row_errors: int) -> str:
    percent = 100.0 * done / total if total else 100.0
    rate_text = f"{rate:,.1f} rows/s" if rate else "measuring"
    eta_text = duration(eta) if eta is not None else "estimating"
    errors = f", {row_errors:,} row errors" if row_errors else ""
    return "\n".join([
        _heading(path, f"🔄 syncing {percent:.1f} %"), "",
        f"**{done:,} / {total:,} rows** ({percent:.1f} %{errors}) · {rate_text} · ETA {eta_text}", "",
        *_plan_lines(plan),
    ])


@dataclass(frozen=True)
class ResultView:
    dataset_dir: str
    link: str | None
    rows: int
    row_errors: int
    first_errors: tuple[str, ...]
    size_bytes: int
    seconds: float
    sha: str | None


def succeeded(path: str, plan: PlanView, result: ResultView) -> str:
    lines = [
        _heading(path, "✅ synced"), "",
        f"| location | `{result.dataset_dir}` |", "|---|---|",
        *([f"| processed link | `{result.link}` |"] if result.link else []),
        f"| rows | {result.rows:,} |",
        f"| row errors | {result.row_errors:,} |",
        f"| size | {human_size(result.size_bytes)} |",
        f"| duration | {duration(result.seconds)} |",
        f"| pinned commit | `{result.sha or 'local'}` |",
        f"| licence | {plan.license or 'not stated on the card'} |",
    ]
    if result.row_errors:
        lines += ["", f"First row errors (all: `hugflow status {plan.dataset_name} --errors`):", ""]
        lines += [f"- {e}" for e in result.first_errors]
    lines += ["", "An operator may merge this PR."]
    return "\n".join(lines)


def failed(path: str, error: str, hint: str) -> str:
    return "\n".join([
        _heading(path, "❌ failed"), "", "```", error.strip()[:6000], "```", "", f"**What to do:** {hint}", "",
        "The PR stays open; push a fix or re-run the job (a sync resumes from its last finished row).",
    ])


def removed(path: str, name: str, paths: list[str]) -> str:
    return "\n".join([_heading(path, "🗑️ removed"), "", f"`{name}` was deleted from this server:", "",
                      *[f"- `{p}`" for p in paths], "", "An operator may merge this PR."])


def refused(reason: str) -> str:
    return f"### hugflow-ray · not synced\n\n{reason}"


def not_merged(reason: str) -> str:
    return f"### hugflow-ray · synced, not merged\n\nEvery request succeeded, but AUTO_MERGE could not merge: " \
           f"{reason}. Merge by hand."
