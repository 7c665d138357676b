"""What every ``hugflow`` command shares (as huggingface_hub's CLI utilities): the settings it runs with, and the
options more than one command takes."""

from __future__ import annotations

from typing import Annotated

import typer

from hugflow_ray.settings import Settings, load_settings
from hugflow_ray.utils.redact import configure_logging

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def settings() -> Settings:
    """The settings (environment and .env), with logging configured from them (secrets redacted)."""
    loaded = load_settings()
    configure_logging(loaded.log_level, loaded.secrets())
    return loaded
