"""What every ``hugflow`` command shares (as huggingface_hub's CLI utilities): the settings it runs with, and the
options more than one command takes."""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from hugflow_ray.settings import Settings, load_settings
from hugflow_ray.utils.redact import configure_logging

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def settings() -> Settings:
    """The settings (environment and .env), with logging configured from them (secrets redacted)."""
    loaded = load_settings()
    configure_logging(loaded.log_level, loaded.secrets())
    return loaded


def echo_json(value: Any) -> None:
    """Print ``value`` as JSON: dataclasses and named tuples as objects, enums as their values, paths as text."""
    typer.echo(json.dumps(value, default=_plain, indent=2, ensure_ascii=False))


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _named(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _named(value: Any) -> Any:
    """Named tuples (in a list too) as objects: json would write them as lists."""
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return value._asdict()
    if isinstance(value, list):
        return [_named(v) for v in value]
    return value
