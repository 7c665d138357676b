"""The ``hugflow`` command: a thin shell that parses, calls one function and prints."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer

from hugflow_ray import __version__
from hugflow_ray.errors import HugflowError, SettingsError
from hugflow_ray.redact import configure_logging, redact
from hugflow_ray.settings import Settings, load_settings

app = typer.Typer(
    name="hugflow",
    help="Bring Hugging Face audio datasets onto your own machines: YAML requests -> MP3 + JSON, with Ray.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_MARKS = {"info": "  ", "warning": "  warning: ", "error": "  error: "}


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


def _settings() -> Settings:
    settings = load_settings()
    configure_logging(settings.log_level, settings.secrets())
    return settings


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Request files (requests/add/*.yaml, requests/remove/*.yaml).")],
    offline: Annotated[bool, typer.Option("--offline", help="Check the schema only; do not ask the Hub.")] = False,
) -> None:
    """Check request files: the schema, then (unless --offline) the repository, revision, subset, split, columns."""
    from hugflow_ray.validate import validate_file

    settings = _settings()
    hub = None
    if not offline:
        from hugflow_ray.hub import Hub

        token = settings.hf_token.get_secret_value() if settings.hf_token else None
        hub = Hub(endpoint=settings.hf_endpoint, token=token)
    invalid = 0
    for path in files:
        report = validate_file(path, hub=hub)
        invalid += not report.valid
        typer.echo(redact(f"{'valid' if report.valid else 'INVALID'}: {path}", settings.secrets()))
        for finding in report.findings:
            typer.echo(redact(f"{_MARKS[finding.level.value]}{finding.message}", settings.secrets()))
    summary = f"{len(files) - invalid} valid, {invalid} invalid" + (" (schema only: --offline)" if offline else "")
    typer.echo(summary)
    if invalid:
        raise typer.Exit(1)


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
