"""``hugflow catalog plan|apply|status``, ``hugflow reconcile`` and ``hugflow drift``: the dataset manager's shell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hugflow_ray.cli import options
from hugflow_ray.core.tiers import Decision
from hugflow_ray.errors import CIError
from hugflow_ray.utils.humanize import gigabytes, human_size

if TYPE_CHECKING:
    from hugflow_ray.settings import Settings

catalog_app = typer.Typer(help="The curated catalog: plan, apply and inspect a tier under the storage budget.",
                          no_args_is_help=True)

_TIER = typer.Option("--tier", help="The tier (cumulative) to bring in; default HUGFLOW_TIER.")
_CATALOG = typer.Option("--catalog", help="The catalog file; default CATALOG_PATH (catalog.yaml).")
_OFFLINE = typer.Option("--offline", help="Do not ask the Hub (no card licence check, no Hub sizes).")
_NAMES = typer.Argument(help="Catalog entries to bring in (any tier), instead of a tier; under the same budget and "
                        "licence rules.", show_default=False)


@catalog_app.command("plan")
def plan_command(
    names: Annotated[list[str] | None, _NAMES] = None,
    tier: Annotated[str | None, _TIER] = None,
    catalog: Annotated[Path | None, _CATALOG] = None,
    offline: Annotated[bool, _OFFLINE] = False,
    as_json: options.AsJson = False,
) -> None:
    """Print what `catalog apply` would bring in, highest priority first, against the budget; and what it leaves
    out and why."""
    from hugflow_ray.catalog import manager

    settings = options.settings()
    decided = manager.plan(settings, tier=tier, names=names or (), catalog=manager.read_catalog(settings, catalog),
                           offline=offline)
    if as_json:
        options.echo_json(plan_json(decided))
        return
    for line in plan_lines(decided):
        typer.echo(line)


def plan_json(decided) -> dict[str, object]:
    """The plan as ``catalog plan --json`` prints it: the figures of :func:`plan_lines`, in bytes."""
    tier_plan = decided.tier
    entries = []
    for planned in tier_plan.entries:
        entry, facts = planned.entry, decided.facts[planned.entry.name]
        entries.append({
            "name": entry.name, "dataset_name": planned.candidate.dataset_name, "priority": entry.priority,
            "tier": entry.tier, "licence": facts.verdict.licence or entry.licence,
            "licence_overridden": facts.verdict.overridden, "needed_bytes": planned.candidate.needed_bytes,
            "source_bytes": facts.source_bytes, "source_peak_bytes": facts.source_peak_bytes,
            "running_bytes": planned.running_bytes if planned.decision.included else None,
            "decision": planned.decision, "included": planned.decision.included, "reason": planned.reason,
        })
    return {"tier": tier_plan.tier or None, "named": list(decided.named) or None, "budget_bytes": tier_plan.budget_bytes, "other_bytes": tier_plan.other_bytes,
            "offline": decided.offline, "entries": entries, "total_bytes": tier_plan.total_bytes,
            "to_sync": [p.entry.name for p in tier_plan.to_sync]}


def _table(header: list[str], rows: list[list[str]], *, right: frozenset[int]) -> list[str]:
    """Columns as wide as their widest cell; the columns in ``right`` right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  " + " ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in
                            enumerate(zip(row, widths, strict=True))).rstrip() for row in [header, *rows]]


def plan_lines(decided) -> list[str]:
    """The plan as ``catalog plan`` and ``reconcile`` print it."""
    tier_plan, catalog = decided.tier, decided.catalog
    if decided.named:
        asked = f"entries {', '.join(decided.named)}"
    else:
        rank = catalog.tiers.index(tier_plan.tier)
        asked = f"tier {tier_plan.tier} ({' + '.join(catalog.tiers[: rank + 1])})"
    lines = [f"{asked}; budget {gigabytes(tier_plan.budget_bytes)}; other data on disk "
             f"{gigabytes(tier_plan.other_bytes)}" + (" (offline: Hub cards not read)" if decided.offline else "")]
    rows = []
    for planned in tier_plan.entries:
        entry, facts = planned.entry, decided.facts[planned.entry.name]
        licence = (facts.verdict.licence or entry.licence) + (" (override)" if facts.verdict.overridden else "")
        rows.append([entry.name, str(entry.priority), entry.tier, licence,
                     gigabytes(planned.candidate.needed_bytes),
                     gigabytes(facts.source_bytes) if facts.source_bytes is not None else "?",
                     gigabytes(facts.source_peak_bytes) if facts.source_peak_bytes is not None else "?",
                     gigabytes(planned.running_bytes) if planned.decision.included else "-", planned.decision.value])
    # "source at peak": the most of the source on disk at once while the entry syncs, counted against the budget
    header = ["entry", "priority", "tier", "licence", "size", "source", "source at peak", "total", "decision"]
    lines += _table(header, rows, right=frozenset({1, 4, 5, 6, 7}))
    overridden = [p.entry for p in tier_plan.entries if decided.facts[p.entry.name].verdict.overridden]
    lines.extend(f"licence override of {e.name}: {e.licence_override}" for e in overridden)
    left_out = tier_plan.left_out
    if left_out:
        lines.append("left out:")
        for p in left_out:
            why = p.reason if p.decision is Decision.LICENCE else f"{p.decision.value}: {p.reason}"
            lines.append(f"  {p.entry.name}: {why}")
    lines.append(f"total {gigabytes(tier_plan.total_bytes)} of {gigabytes(tier_plan.budget_bytes)}; "
                 f"{len(tier_plan.to_sync)} to sync")
    return lines


@catalog_app.command("apply")
def apply_command(
    names: Annotated[list[str] | None, _NAMES] = None,
    tier: Annotated[str | None, _TIER] = None,
    catalog: Annotated[Path | None, _CATALOG] = None,
) -> None:
    """Bring the tier (or the entries named) in: highest priority first, never over the budget, complete entries
    untouched."""
    from hugflow_ray.catalog import manager
    from hugflow_ray.executors.default import release_ray

    settings = options.settings()
    try:
        report = manager.apply(settings, tier=tier, names=names or (), catalog=manager.read_catalog(settings, catalog),
                               on_entry=lambda p: typer.echo(f"{p.decision.value}: {p.entry.name}", err=True))
    finally:
        release_ray()
    for result in report.results:
        typer.echo(f"{result.name:<22} {result.outcome.value:<16} {result.detail}")
    if not report.ok:
        raise typer.Exit(1)


@catalog_app.command("status")
def status_command(
    catalog: Annotated[Path | None, _CATALOG] = None,
    as_json: options.AsJson = False,
) -> None:
    """Every catalog entry on this machine: state, rows, size on disk, licence, tier; totals per tier and the
    budget."""
    from hugflow_ray.catalog import manager

    settings = options.settings()
    summary = manager.status(settings, catalog=manager.read_catalog(settings, catalog))
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
        return
    rows = [[e.name, e.tier, e.licence, e.state, f"{e.rows_done:,}/{e.rows_total:,}" if e.state != "absent" else "-",
             human_size(e.size_bytes), gigabytes(e.expected_bytes)] for e in summary.entries]
    for line in _table(["entry", "tier", "licence", "state", "rows", "on disk", "expected"], rows,
                       right=frozenset({4, 5, 6})):
        typer.echo(line)
    for tier, size in summary.tiers.items():
        typer.echo(f"tier {tier}: {gigabytes(size)} on disk")
    typer.echo(f"STORAGE_ROOT uses {gigabytes(summary.used_bytes)} of a {gigabytes(summary.budget_bytes)} budget")


def reconcile(
    tier: Annotated[str | None, _TIER] = None,
    apply: Annotated[bool, typer.Option("--apply", help="Carry the plan out (default: print it).")] = False,
    requests_dir: Annotated[Path, typer.Option("--requests", help="The requests directory.")] = Path("requests"),
    offline: Annotated[bool, _OFFLINE] = False,
    as_json: options.AsJson = False,
) -> None:
    """Compare what requests/ and the catalog tier ask for with STORAGE_ROOT: bring in, resume, remove; list
    unmanaged directories (never touched). --apply carries it out; a second run has nothing to do."""
    from hugflow_ray.catalog import reconcile as rec
    from hugflow_ray.executors.default import release_ray

    settings = options.settings()
    decided = rec.plan(settings, requests_dir=requests_dir, tier=tier, offline=offline)
    found: dict[str, object] = {
        "steps": [{"action": s.action, "dataset_name": s.dataset_name, "origin": s.origin} for s in decided.steps],
        "left_out": [{"dataset_name": p.candidate.dataset_name, "entry": p.entry.name, "decision": p.decision,
                      "reason": p.reason} for p in decided.left_out],
        "unmanaged": decided.unmanaged, "in_place": decided.in_place,
    }
    if not as_json:
        for step in decided.steps:
            typer.echo(f"{step.action.value:<9} {step.dataset_name}  ({step.origin})")
        for planned in decided.left_out:
            typer.echo(f"left out  {planned.candidate.dataset_name}  (catalog:{planned.entry.name}: "
                       f"{planned.decision.value}: {planned.reason})")
        for name in decided.unmanaged:
            typer.echo(f"unmanaged {name}  (nothing asks for it; left as it is)")
        typer.echo(f"{len(decided.steps)} to do, {len(decided.in_place)} in place" if decided.steps
                   else f"nothing to do: {len(decided.in_place)} in place")
    if not apply or decided.empty:
        if as_json:
            options.echo_json(found)
        return
    try:
        report = rec.apply(settings, decided, on_step=lambda s: typer.echo(f"{s.action.value}: {s.dataset_name}",
                                                                          err=True))
    finally:
        release_ray()
    if as_json:
        options.echo_json({**found, "results": [{"action": r.step.action, "dataset_name": r.step.dataset_name,
                                                 "ok": r.ok, "detail": r.detail} for r in report.results]})
    else:
        for result in report.results:
            typer.echo(f"{'done' if result.ok else 'FAILED':<6} {result.step.dataset_name}: {result.detail}")
    if not report.ok:
        raise typer.Exit(1)


def drift(
    requests_dir: Annotated[Path, typer.Option("--requests", help="The requests directory.")] = Path("requests"),
    open_prs: Annotated[bool, typer.Option("--open-prs", help="Open (or update) one pull request per drifted "
                                           "request in GITHUB_REPOSITORY, which the PR flow syncs.")] = False,
    as_json: options.AsJson = False,
) -> None:
    """List the copies of Hub requests whose revision now resolves to another commit on the Hub, or whose card now
    states another licence (with the licence policy's verdict). Exit 1 when the Hub could not answer for one."""
    from hugflow_ray.catalog.drift import drift as find_drift

    settings = options.settings()
    found = find_drift(settings, requests_dir=requests_dir)
    proposed = {d.dataset_name: p for d, p in _open_prs(settings, found)} if open_prs else {}
    if as_json:
        options.echo_json([{"request": str(d.request), "dataset_name": d.dataset_name, "hf_id": d.hf_id,
                            "revision": d.revision, "copy_sha": d.copy_sha, "hub_sha": d.hub_sha, "moved": d.moved,
                            "licence_before": d.licence_before, "licence_now": d.licence_now,
                            "licence_changed": d.licence_changed,
                            "licence_verdict": d.verdict.line() if d.verdict and d.licence_changed else None,
                            "pull_request": ({"number": p.number, "url": p.url, "action": p.action}
                                             if (p := proposed.get(d.dataset_name)) else None),
                            "error": d.error} for d in found])
    else:
        for d in found:
            if d.error is not None:
                typer.echo(f"error     {d.dataset_name}: {d.error}")
                continue
            if d.moved:
                typer.echo(f"moved     {d.dataset_name}: {d.hf_id}@{d.revision} {(d.copy_sha or '?')[:12]} -> "
                           f"{(d.hub_sha or '?')[:12]}  ({d.request})")
            if d.licence_changed and d.verdict is not None:
                typer.echo(f"licence   {d.dataset_name}: {d.licence_before or '(none)'} -> {d.verdict.line()}")
            if (p := proposed.get(d.dataset_name)) is not None:
                typer.echo(f"pr        {d.dataset_name}: {p.action} #{p.number} {p.url}")
        drifted, failed = sum(d.drifted for d in found), sum(d.error is not None for d in found)
        checked = len(found) - failed
        summary = (f"{drifted} of {checked} copies of Hub requests drifted" if drifted
                   else f"no drift: {checked} copies of Hub requests match the Hub")
        typer.echo(summary + (f"; {failed} could not be checked" if failed else ""))
    if any(d.error is not None for d in found):
        raise typer.Exit(1)


def _open_prs(settings: Settings, found: list[Any]) -> list[tuple[Any, Any]]:
    """``drift --open-prs``: the pull requests, in ``GITHUB_REPOSITORY`` with ``GITHUB_TOKEN``."""
    from hugflow_ray.adapters.github import ProposalClient
    from hugflow_ray.catalog.drift import open_pull_requests
    from hugflow_ray.gitops.control import github_token

    if not settings.github_repository:
        raise CIError("drift --open-prs needs GITHUB_REPOSITORY (owner/name of the requests repository)")
    client = ProposalClient(api_url=settings.github_api_url, token=github_token(settings),
                            repository=settings.github_repository)
    return open_pull_requests(found, client)
