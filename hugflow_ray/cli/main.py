"""The ``hugflow`` command: a thin shell that parses, calls one function and prints."""

from __future__ import annotations

import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Annotated

import typer

from hugflow_ray import __version__
from hugflow_ray.cli import options
from hugflow_ray.copies.layout import StoreLayout
from hugflow_ray.core.records import DatasetState
from hugflow_ray.errors import HugflowError, Interrupted, SettingsError
from hugflow_ray.settings import Settings, load_settings
from hugflow_ray.utils.humanize import human_size
from hugflow_ray.utils.redact import redact

app = typer.Typer(
    name="hugflow",
    help="Bring Hugging Face audio datasets onto your own machines: YAML requests -> MP3 + JSON, with Ray.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_MARKS = {"info": "  ", "warning": "  warning: ", "error": "  error: "}
# How a person gets past the dashboard's "Authentication Token Required" (Ray's token auth is on by default); the
# token itself never goes to a log.
TOKEN_HINT = "it asks for Ray's token: `ray get-auth-token` prints it (RAY_AUTH_TOKEN, else ~/.ray/auth_token)"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hugflow {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """hugflow-ray."""


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Request files (requests/add/*.yaml, requests/remove/*.yaml).")],
    offline: Annotated[bool, typer.Option("--offline", help="Check the schema only; do not ask the Hub.")] = False,
) -> None:
    """Check request files: the schema, then (unless --offline) the repository, revision, subset, split, columns."""
    from hugflow_ray.pipeline.validate import validate_file

    settings = options.settings()
    hub = None
    if not offline:
        from hugflow_ray.adapters.hub import Hub

        hub = Hub.from_settings(settings)
    invalid = 0
    for path in files:
        report = validate_file(path, hub=hub, licences=settings.licence_policy)
        invalid += not report.valid
        typer.echo(redact(f"{'valid' if report.valid else 'INVALID'}: {path}", settings.secrets()))
        for finding in report.findings:
            typer.echo(redact(f"{_MARKS[finding.level.value]}{finding.message}", settings.secrets()))
    summary = f"{len(files) - invalid} valid, {invalid} invalid" + (" (schema only: --offline)" if offline else "")
    typer.echo(summary)
    if invalid:
        raise typer.Exit(1)


@app.command()
def init() -> None:
    """Create the storage, state and request directories."""
    settings = options.settings()
    layout = StoreLayout.of(settings)
    for directory in (
        settings.storage_root,
        layout.progress_files,
        layout.locks,
        Path("requests/add"),
        Path("requests/remove"),
    ):
        directory.mkdir(parents=True, exist_ok=True)
        typer.echo(f"ready: {directory}")
    try:
        settings.processed_root.mkdir(parents=True, exist_ok=True)
        typer.echo(f"ready: {settings.processed_root}")
    except OSError as e:
        typer.echo(f"warning: cannot create PROCESSED_ROOT {settings.processed_root} ({e.strerror}); "
                   "finished datasets will not be linked there", err=True)


@app.command("local-sync")
def local_sync(
    file: Annotated[Path, typer.Argument(help="An add request (requests/add/*.yaml).")],
    restart: Annotated[
        bool, typer.Option("--restart", help="Discard converted rows made with other settings and start over.")
    ] = False,
    lock_owner: Annotated[
        str, typer.Option("--lock-owner", help="Who holds the dataset's lock, as others are told (e.g. 'PR #12').")
    ] = "local-sync",
    expect_sha: Annotated[
        str | None, typer.Option("--expect-sha", help="Refuse unless the revision still resolves to this commit.")
    ] = None,
    dashboard: Annotated[
        bool, typer.Option("--dashboard", help="Start the embedded Ray with its dashboard, to watch the sync.")
    ] = False,
    dashboard_port: Annotated[int, typer.Option("--dashboard-port", help="The dashboard's port (127.0.0.1).")] = 8265,
    dashboard_wait: Annotated[
        float, typer.Option("--dashboard-wait", help="After the sync, keep the dashboard up this many seconds, or "
                            "until Enter is pressed.")
    ] = 600.0,
) -> None:
    """Sync one dataset on this machine (embedded Ray, or the cluster at RAY_ADDRESS); resumes where it stopped."""
    from hugflow_ray.executors.default import default_executor, release_ray
    from hugflow_ray.pipeline.sync import sync
    from hugflow_ray.utils.timing import process_age

    imports = process_age()
    settings = options.settings()
    if dashboard and settings.ray_address:
        raise SettingsError("--dashboard starts the embedded Ray's dashboard; a cluster has its own "
                            "(http://<head>:8265): unset RAY_ADDRESS or drop --dashboard")
    # Only a dashboard needs the executor made here; otherwise Ray loads when there is work.
    executor = default_executor(None, settings.storage_resource, dashboard_port=dashboard_port,
                                record_metrics=settings.hugflow_metrics) if dashboard else None
    signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        if dashboard:
            typer.echo(f"Ray dashboard: http://127.0.0.1:{dashboard_port} (once Ray has started; {TOKEN_HINT})",
                       err=True)
        report = sync(file, settings, restart=restart, owner=lock_owner, expect_sha=expect_sha, progress_bar=True,
                      executor=executor)
        if dashboard and not report.already_complete:
            _keep_dashboard(dashboard_port, dashboard_wait)
    except (Interrupted, KeyboardInterrupt) as e:
        stopped = e if isinstance(e, Interrupted) else Interrupted(signal.SIGINT)
        for signum in (signal.SIGINT, signal.SIGTERM):  # a second signal must not cut the clean-up short
            signal.signal(signum, signal.SIG_IGN)
        release_ray()
        typer.echo(_interrupted_line(stopped), err=True)
        raise typer.Exit(128 + stopped.signum) from None
    shutdown = release_ray()
    if report.already_complete:
        typer.echo(f"{report.dataset_name} is already complete ({report.rows_done} rows): nothing to do.")
        typer.echo(f"  {report.dataset_dir}")
        return
    errors = f" with {report.row_errors} row errors" if report.row_errors else ""
    resumed = f", resumed from row {report.resumed_from}" if report.resumed_from else ""
    busy = f", output actor busy {100 * report.output_busy_fraction:.1f} %" if report.output_busy_fraction else ""
    ray_times = f"Ray start-up {report.ray_startup_seconds:.1f} s, shut-down {shutdown:.1f} s"
    typer.echo(f"{report.dataset_name}: completed{errors} ({report.rows_done} rows{resumed}, {report.seconds:.1f} s, "
               f"{ray_times}{busy})")
    typer.echo(f"  seconds:  {_phases_line(imports, report.phases, shutdown)}")
    if report.replaced_sha:
        typer.echo(f"  updated:  from {report.replaced_sha[:12]} to {(report.sha or '')[:12]}: {report.reused:,} rows of "
                   f"unchanged files taken over, {report.newly_processed:,} converted")
    if len(report.blocks_by_node) > 1:
        nodes = ", ".join(f"{node[:12]} {count}" for node, count in sorted(report.blocks_by_node.items()))
        typer.echo(f"  blocks converted per node: {nodes}")
    typer.echo(f"  MP3s:     {report.dataset_dir / 'audio'}")
    typer.echo(f"  JSONs:    {report.dataset_dir / 'json'}")
    typer.echo(f"  manifest: {report.manifest}")
    if report.row_errors:
        typer.echo(f"  errors:   hugflow status {report.dataset_name} --errors")


def _phases_line(imports: float | None, phases: dict[str, float], shutdown: float) -> str:
    """Where a sync's seconds went, in order; the executor's start ran beside download and ledger, so only the wait
    for it adds to the total."""
    shown = {"interpreter and imports": imports, **phases, "shut-down": shutdown}
    return ", ".join(f"{name} {seconds:.1f}" for name, seconds in shown.items() if seconds is not None)


@app.command()
def submit(
    file: Annotated[Path, typer.Argument(help="An add request (requests/add/*.yaml).")],
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Print the job's id and return at once.")] = False,
) -> None:
    """Sync one dataset as a Ray job on the cluster's storage node (RAY_ADDRESS=http://<head>:8265): follow its log
    and exit with its outcome. A job of the same dataset and commit still running is followed, not started again."""
    import shutil

    from hugflow_ray.errors import SyncError

    settings = options.settings()
    if settings.ray_job_server is None:
        raise SyncError("submit needs the cluster's job server: set RAY_ADDRESS=http://<head>:8265 (and "
                        "RAY_AUTH_MODE=token with RAY_AUTH_TOKEN); on this machine alone use `hugflow local-sync FILE`")
    from hugflow_ray.drivers.ray_job import submit_file

    echo = (lambda line: None) if no_wait else typer.echo
    job, root = submit_file(file, settings, echo=echo)
    shutil.rmtree(root, ignore_errors=True)  # the job server has its own copy
    verb = "following the running job" if job.attached else "submitted"
    typer.echo(f"{verb} {job.job_id} ({job.jobs.dashboard_link(job.job_id)}; the dashboard asks for the cluster's "
               "token, RAY_AUTH_TOKEN)")
    if no_wait:
        typer.echo(job.job_id)
        return
    try:
        code = job.wait()
    except KeyboardInterrupt:
        typer.echo(f"stopped following; the job goes on: `hugflow submit {file}` follows it again, "
                   f"`ray job stop {job.job_id}` stops it", err=True)
        raise typer.Exit(130) from None
    assert job.status is not None
    if code != 0:
        typer.echo(f"error: {job.ended()}", err=True)
        raise typer.Exit(code)
    typer.echo(f"{job.job_id}: {job.status.value}")


def _keep_dashboard(port: int, seconds: float) -> None:
    """Keep the embedded Ray (and so its dashboard) up for ``seconds``, or until a line on standard input (Enter),
    Ctrl-C or SIGTERM. Input that has ended (``< /dev/null``, ``nohup``, a closed pipe) ends nothing: the timeout
    alone then."""
    import select

    typer.echo(f"the sync is done; the dashboard stays at http://127.0.0.1:{port} until you press Enter (or "
               f"{seconds:.0f} s pass, or Ctrl-C)", err=True)
    deadline = time.monotonic() + max(0.0, seconds)
    watch_input = True
    try:
        while (left := deadline - time.monotonic()) > 0:
            if not watch_input:
                time.sleep(left)
                return
            try:
                ready, _, _ = select.select([sys.stdin], [], [], left)
            except (OSError, ValueError):  # no usable standard input
                watch_input = False
                continue
            if not ready or sys.stdin.readline():
                return
            watch_input = False  # end of input: not a person pressing Enter
    except (Interrupted, KeyboardInterrupt):  # the sync is done: a signal only ends the wait
        return


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signum)


def _interrupted_line(stopped: Interrupted) -> str:
    """What an interrupted local-sync says: which signal, what is kept, how to go on."""
    by = signal.Signals(stopped.signum).name
    if stopped.dataset_name is None or stopped.rows_kept is None:
        return f"interrupted by {by} before any row was converted; run the same command again to sync"
    total = f" of {stopped.rows_total:,}" if stopped.rows_total is not None else ""
    return (f"interrupted by {by}: {stopped.rows_kept:,}{total} rows of {stopped.dataset_name} are kept; run the same "
            "command again to resume")


@app.command("sync")
def sync_command(
    ci_mode: Annotated[
        bool, typer.Option("--ci-mode", help="Sync the request files of the pull request in GitHub Actions' event.")
    ] = False,
) -> None:
    """In GitHub Actions: sync the PR's requests, reporting on the PR (and Slack); non-zero when any failed."""
    if not ci_mode:
        raise typer.BadParameter("only --ci-mode exists; on this machine use `hugflow local-sync FILE`",
                                 param_hint="--ci-mode")
    from hugflow_ray.gitops import control

    raise typer.Exit(control.run(options.settings()))


@app.command()
def status(
    name: Annotated[str | None, typer.Argument(help="One dataset (its directory name).")] = None,
    errors: Annotated[bool, typer.Option("--errors", help="List the dataset's failed rows.")] = False,
    as_json: options.AsJson = False,
) -> None:
    """Show the datasets under STORAGE_ROOT (or one dataset's failed rows)."""
    from hugflow_ray.copies import store
    from hugflow_ray.gitops.comments import RETRY_HINT
    from hugflow_ray.pipeline.progress import read_progress

    settings = options.settings()
    if name is not None and errors:
        failed = store.row_errors(StoreLayout.of(settings), name)
        if as_json:
            options.echo_json([{"row_id": r.row_id, "error_code": r.error_code,
                                "error": redact(r.error or "", settings.secrets())} for r in failed])
            return
        typer.echo(f"{name}: {len(failed)} row errors")
        for row in failed:
            typer.echo(f"  row {row.row_id}: [{row.error_code}] {row.error}")
        if failed:
            typer.echo(RETRY_HINT.format(name=name))
        return
    rows = [r for r in store.status(StoreLayout.of(settings)) if name is None or r.dataset_name == name]
    progress = {r.dataset_name: read_progress(settings.state_dir, r.dataset_name) for r in rows
                if r.state is DatasetState.SYNCING}
    if as_json:
        listed = []
        for r in rows:
            running = progress.get(r.dataset_name)
            listed.append({**r.to_dict(), "error": redact(r.error, settings.secrets()) if r.error else None,
                           "rows_per_second": running.rows_per_second if running else None,
                           "eta_seconds": running.eta_seconds if running else None})
        options.echo_json(listed)
        if not rows and name is not None:
            raise typer.Exit(1)
        return
    if not rows:
        typer.echo(f"no datasets under {settings.storage_root}" if name is None else f"no dataset {name!r}")
        raise typer.Exit(0 if name is None else 1)
    header = f"{'dataset':<60} {'state':<9} {'rows':>15} {'errors':>7} {'size':>10} {'sha':<12} updated"
    typer.echo(header)
    for r in rows:
        done = f"{r.rows_done}/{r.rows_total if r.state is not DatasetState.DAMAGED else '?'}"
        typer.echo(f"{r.dataset_name:<60} {r.state:<9} {done:>15} {r.row_errors:>7} "
                   f"{human_size(r.size_bytes):>10} {(r.identity.sha or 'local')[:12]:<12} {r.updated}")
    for r in rows:
        if r.error and r.state is not DatasetState.COMPLETE:
            typer.echo(redact(f"{r.dataset_name}: {r.error}", settings.secrets()))
    from hugflow_ray.utils.humanize import duration

    for r in rows:
        running = progress.get(r.dataset_name)
        if running is not None and running.rows_per_second:
            eta = f", about {duration(running.eta_seconds)} left" if running.eta_seconds is not None else ""
            typer.echo(f"{r.dataset_name}: {running.rows_per_second:,.1f} rows/s{eta} (as of {running.updated})")


@app.command()
def remove(file: Annotated[Path, typer.Argument(help="A remove request (requests/remove/*.yaml).")]) -> None:
    """Delete a dataset copy: files, manifests, ledger, progress file and processed symlink, and its other versions
    (an update being built, the copies updates replaced and kept)."""
    from hugflow_ray.copies.store import remove as remove_dataset

    report = remove_dataset(file, StoreLayout.of(options.settings()))
    typer.echo(f"removed {report.dataset_name}:")
    for path in report.removed:
        typer.echo(f"  {path}")


@app.command()
def verify(
    name: Annotated[str | None, typer.Argument(help="A copy's directory name (`hugflow status` lists them).")] = None,
    every: Annotated[bool, typer.Option("--all", help="Verify every copy under STORAGE_ROOT.")] = False,
    repair: Annotated[bool, typer.Option("--repair", help="Re-make exactly the bad rows (or files), then check "
                                         "again.")] = False,
    as_json: options.AsJson = False,
) -> None:
    """Re-hash every file of a copy against its ledger's sha256: list missing, changed and unexpected files; exit 1
    when anything is wrong (after --repair: when the repair did not make it whole)."""
    from hugflow_ray.copies import store
    from hugflow_ray.executors.default import release_ray

    settings = options.settings()
    if (name is None) == (not every):
        raise typer.BadParameter("name one copy, or pass --all", param_hint="NAME")
    names = [r.dataset_name for r in store.status(StoreLayout.of(settings))] if every else [name]
    wrong = 0
    found: list[dict[str, object]] = []  # with --json: one object per copy, printed at the end
    try:
        for copy in names:
            assert copy is not None
            try:
                outcome = _verify_one(settings, copy, repair=repair, quiet=as_json)
                wrong += not outcome["ok"]
            except HugflowError as e:
                if not every:
                    raise
                error = redact(f"{copy}: {e}", settings.secrets())
                outcome = {"dataset_name": copy, "ok": False, "error": error}
                if not as_json:
                    typer.echo(error)  # --all goes on with the next copy
                wrong += 1
            found.append(outcome)
    finally:
        release_ray()
    if as_json:
        options.echo_json(found if every else found[0])
    if wrong:
        raise typer.Exit(1)


def _verify_one(settings: Settings, copy: str, *, repair: bool, quiet: bool) -> dict[str, object]:
    """Verify one copy (and repair it when asked), saying what it finds unless ``quiet``; what was found, as JSON
    would say it (``ok``: whether the copy is whole in the end)."""
    from hugflow_ray.catalog import manager

    report = manager.verify_copy(settings, copy)
    found: dict[str, object] = {"dataset_name": copy, "ok": report.ok, "verify": report}
    for line in [] if quiet else report.lines():
        typer.echo(line)
    if report.ok or not repair:
        return found
    repaired = manager.repair_copy(settings, copy, report)
    after = manager.verify_copy(settings, copy)
    if not quiet:
        typer.echo(f"{copy}: repaired {len(repaired.rows_dropped)} rows, removed {len(repaired.files_removed)} "
                   "files")
        typer.echo(after.lines()[0])
    return {**found, "ok": after.ok, "repaired": {"rows_dropped": repaired.rows_dropped,
                                                  "files_removed": repaired.files_removed}, "after": after}


@app.command()
def retry(
    name: Annotated[str, typer.Argument(help="A copy's directory name (`hugflow status` lists them).")],
    code: Annotated[str | None, typer.Option("--code", help="Only the row errors of this code (`hugflow status "
                                             "NAME --errors` lists them), e.g. too_long.")] = None,
    as_json: options.AsJson = False,
) -> None:
    """Convert again exactly the rows recorded as row errors: after a codec fix, or with MAX_AUDIO_SECONDS raised.
    Exit 1 when some still fail."""
    from hugflow_ray.catalog import manager
    from hugflow_ray.executors.default import release_ray

    settings = options.settings()
    try:
        report = manager.retry_copy(settings, name, code=code)
    finally:
        release_ray()
    if as_json:
        options.echo_json({"dataset_name": report.dataset_name, "retried": report.retried,
                           "still_failing": report.still_failing})
    elif not report.retried:
        kind = f" of code {code!r}" if code else ""
        typer.echo(f"{name}: no row errors{kind} to retry.")
    else:
        fixed = len(report.retried) - len(report.still_failing)
        typer.echo(f"{name}: retried {len(report.retried)} rows: {fixed} converted, {len(report.still_failing)} "
                   "still row errors")
        if report.still_failing:
            typer.echo(f"  errors:   hugflow status {name} --errors")
    if report.still_failing:
        raise typer.Exit(1)


def _register_manager() -> None:
    from hugflow_ray.cli.catalog import catalog_app, drift, reconcile

    app.add_typer(catalog_app, name="catalog")
    app.command()(reconcile)
    app.command()(drift)


_register_manager()


def main() -> None:
    """Entry point: known errors print one line and a hint (exit 1); HUGFLOW_DEBUG=1 adds the traceback."""
    try:
        app()
    except HugflowError as e:
        debug = _debug_enabled()
        if debug:
            traceback.print_exc()
        typer.echo(redact(f"error: {e}"), err=True)
        if not debug and not isinstance(e, SettingsError):
            typer.echo("(set HUGFLOW_DEBUG=1 for the traceback)", err=True)
        sys.exit(1)


def _debug_enabled() -> bool:
    try:
        return load_settings().hugflow_debug
    except HugflowError:
        return False
