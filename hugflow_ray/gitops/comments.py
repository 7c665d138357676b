"""The living PR comment of each request, pure: hidden markers that find it again, and its texts by stage."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hugflow_ray.core.records import DatasetIdentity
from hugflow_ray.utils.humanize import duration, human_size

MARKER_PREFIX = "<!-- hugflow-ray:"
PR_MARKER = f"{MARKER_PREFIX}pr -->"
ROW_ERRORS_LISTED = 5
# Said under a copy's row errors (the PR comment, `hugflow status NAME --errors`).
RETRY_HINT = ("After a fix (a newer hugflow, or MAX_AUDIO_SECONDS raised), `hugflow retry {name}` converts exactly "
              "these rows again (`--code CODE`: only one kind).")


REQUEST_MARKER = re.compile(re.escape(MARKER_PREFIX) + r"request (.+?) -->")


def request_marker(path: str) -> str:
    """The hidden marker that finds a request's one living comment again."""
    return f"{MARKER_PREFIX}request {path} -->"


REMOVED = "🗑️ removed"


def _heading(path: str, state: str) -> str:
    return f"### hugflow-ray · `{path}` · {state}"


def starting(path: str) -> str:
    return f"{_heading(path, '⏳ starting')}\n\nValidating the request against the Hub…"


@dataclass(frozen=True)
class PlanView:
    """The plan as the PR comment shows it, before any download."""

    identity: DatasetIdentity
    rows: int | None
    download_bytes: int | None
    target: str
    audio_column: str | None
    text_column: str | None
    licence: str | None = None  # the licence policy's verdict, as a line
    source_peak_bytes: int | None = None  # the most of the source on disk at once while it syncs
    keep_sources: bool = False


def _plan_lines(plan: PlanView) -> list[str]:
    rows = f"{plan.rows:,}" if plan.rows is not None else "counted after the download"
    size = human_size(plan.download_bytes) if plan.download_bytes is not None else "unknown"
    if plan.source_peak_bytes is None:
        peak = "unknown (the Hub does not say every file's size)"
    elif plan.keep_sources:
        peak = f"{human_size(plan.source_peak_bytes)}: every file is kept (KEEP_SOURCES)"
    else:
        peak = (f"at most {human_size(plan.source_peak_bytes)} at once: each file is deleted once its rows are "
                "converted")
    identity = plan.identity
    return [
        f"| dataset | `{identity.source}` |", "|---|---|",
        f"| pinned commit | `{identity.sha or 'local'}` |",
        f"| subset / split | `{identity.subset or 'default'}` / `{identity.split}` |",
        f"| rows | {rows} |",
        f"| download | {size} |",
        f"| source on disk | {peak} |",
        f"| licence | {plan.licence or identity.license or 'not stated on the card: check before use'} |",
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
    already_complete: bool = False  # an earlier run synced it at this commit: this one had nothing to do


def succeeded(path: str, plan: PlanView, result: ResultView) -> str:
    lines = [
        _heading(path, "✅ synced"), "",
        f"| location | `{result.dataset_dir}` |", "|---|---|",
        *([f"| processed link | `{result.link}` |"] if result.link else []),
        f"| rows | {result.rows:,} |",
        f"| row errors | {result.row_errors:,} |",
        f"| size | {human_size(result.size_bytes)} |",
        *([] if result.already_complete else [f"| duration | {duration(result.seconds)} |"]),
        f"| pinned commit | `{plan.identity.sha or 'local'}` |",
        f"| licence | {plan.licence or plan.identity.license or 'not stated on the card'} |",
    ]
    if result.row_errors:
        lines += ["", f"First row errors (all: `hugflow status {plan.identity.name} --errors`):", ""]
        lines += [f"- {e}" for e in result.first_errors]
        lines += ["", RETRY_HINT.format(name=plan.identity.name)]
    if result.already_complete:
        lines += ["", "Already complete at this commit (an earlier run synced it): nothing to do."]
    lines += ["", "An operator may merge this PR."]
    return "\n".join(lines)


def failed(path: str, error: str, hint: str) -> str:
    return "\n".join([
        _heading(path, "❌ failed"), "", "```", error.strip()[:6000], "```", "", f"**What to do:** {hint}", "",
        "The PR stays open; push a fix or re-run the job (a sync resumes from its last finished row).",
    ])


def removed(path: str, name: str, paths: list[str]) -> str:
    return "\n".join([_heading(path, REMOVED), "", f"`{name}` was deleted from this server:", "",
                      *[f"- `{p}`" for p in paths], "", "An operator may merge this PR."])


def already_removed(path: str, name: str) -> str:
    return "\n".join([_heading(path, REMOVED), "", (f"`{name}` was deleted from this server by an earlier run of this "
                                                     "job at this commit: nothing to do."),
                      "", "An operator may merge this PR."])


def says_removed(body: str, path: str, sha: str) -> bool:
    """Whether ``body`` (a request's comment) says the request at commit ``sha`` removed its dataset."""
    return body.startswith(_heading(path, REMOVED)) and head_line(sha) in body


def head_line(sha: str) -> str:
    """The line every comment ends with: which commit of the PR it describes."""
    return f"<sub>Describes the PR's head commit `{sha[:12]}`.</sub>"


def outdated(path: str, why: str) -> str:
    """A request's comment once it no longer describes the PR's head commit."""
    return f"{_heading(path, '⚠️ outdated')}\n\nThis comment described an earlier commit of this PR. {why}"


def gate_passed() -> str:
    return "### hugflow-ray · synced for the head commit\n\nEach request file has its own comment below."


def refused(reason: str) -> str:
    return f"### hugflow-ray · not synced\n\n{reason}"


def auto_merge_on() -> str:
    return ("### hugflow-ray · synced, auto-merge on\n\nEvery request succeeded. GitHub merges this PR when its "
            "required checks pass, as long as its head is still the commit below (a new push turns it off).")


def not_merged(reason: str) -> str:
    return ("### hugflow-ray · synced, not merged\n\nEvery request succeeded, but AUTO_MERGE could not merge: "
            f"{reason}. Allow auto-merge in the repository's settings (GitHub then merges when the required checks "
            "pass; a direct merge from inside a required check is refused while that check runs), or merge by hand.")
