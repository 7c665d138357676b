"""Hermetic tests: no credentials leak in, every cache lives in a temporary directory, no network but loopback."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# The Hub client reads these when first imported, so they are set before any test module imports it.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="hugflow-tests-"))
os.environ["HF_HOME"] = str(_SESSION_HOME / "hf")
os.environ["HF_DATASETS_CACHE"] = str(_SESSION_HOME / "hf" / "datasets")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"  # nothing listens there: a test that forgets its server fails fast
os.environ.pop("HF_HUB_OFFLINE", None)

_CREDENTIALS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "GITHUB_TOKEN", "GH_TOKEN", "SLACK_WEBHOOK_URL", "SLACK_BOT_TOKEN")
_SETTINGS = (
    "STORAGE_ROOT", "PROCESSED_ROOT", "STATE_DIR", "SLACK_CHANNEL", "PROGRESS_INTERVAL", "MAX_CONCURRENT_DOWNLOADS",
    "AUTO_MERGE", "LOG_LEVEL", "MP3_BITRATE", "MP3_QUALITY", "HUGFLOW_DEBUG", "RAY_ADDRESS",
)


@pytest.fixture(autouse=True)
def hermetic_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Clear credentials and settings, and run each test in its own empty directory (so no stray .env is read)."""
    for name in _CREDENTIALS + _SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", os.environ["HF_ENDPOINT"])
    monkeypatch.chdir(tmp_path)
    yield tmp_path
