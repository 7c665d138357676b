"""`hugflow retry`: the rows recorded as row errors converted again, exactly them, after the cause is fixed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hugflow_ray.api import row_errors
from hugflow_ray.cli.main import app
from hugflow_ray.gitops import comments
from hugflow_ray.pipeline.sync import sync
from hugflow_ray.settings import Settings, load_settings
from tests import datasets_fixtures as fx
from tests.helpers import digest_tree

pytestmark = pytest.mark.usefixtures("ray_session")

SHORT, LONG = 4, 3  # rows of 0.2 s, then rows of 1.0 s
CORRUPT = SHORT + LONG  # the last row's bytes are no audio


def copy_with_errors(root: Path, max_seconds: float) -> tuple[Path, Settings]:
    """A local dataset whose long rows are too long for ``max_seconds`` and whose last row is undecodable, synced
    into ``root``; returns the request and the settings."""
    records = [*fx.speech_records(SHORT, seconds=0.2), *fx.speech_records(LONG, start=SHORT, seconds=1.0)]
    corrupt = fx.speech_records(1, start=CORRUPT)[0]
    corrupt["audio"] = {"bytes": np.random.default_rng(7).bytes(3000), "path": "corrupt.flac"}
    shard = fx.parquet_bytes([*records, corrupt], fx.speech_features(), row_group_size=4)
    fx.write_local_dataset(root / "source", [shard])
    request = root / "requests" / "add" / "calls.yaml"
    request.parent.mkdir(parents=True)
    request.write_text("path: ../../source\ndescription: retry\n")
    settings = load_settings(storage_root=root / "datasets", state_dir=root / "state",
                             processed_root=root / "processed", max_audio_seconds=max_seconds, max_row_error_rate=0.9)
    return request, settings


def cli(settings: Settings, *args: str, max_seconds: float) -> tuple[int, str]:
    env = {"STORAGE_ROOT": str(settings.storage_root), "STATE_DIR": str(settings.state_dir),
           "PROCESSED_ROOT": str(settings.processed_root), "MAX_AUDIO_SECONDS": str(max_seconds),
           "MAX_ROW_ERROR_RATE": "0.9"}
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout


def test_retry_converts_exactly_the_row_errors_of_a_code_once_the_cause_is_fixed(tmp_path: Path) -> None:
    request, settings = copy_with_errors(tmp_path / "copy", max_seconds=0.5)
    report = sync(request, settings)
    name = report.dataset_name
    assert {(e.row_id, e.error_code) for e in row_errors(settings, name)} == {
        *((row, "too_long") for row in range(SHORT, CORRUPT)), (CORRUPT, "undecodable")}
    code, out = cli(settings, "status", name, "--errors", max_seconds=0.5)
    assert code == 0 and comments.RETRY_HINT.format(name=name) in out

    code, out = cli(settings, "retry", name, "--code", "too_long", max_seconds=5)
    assert code == 0, out
    assert out.strip() == f"{name}: retried {LONG} rows: {LONG} converted, 0 still row errors"
    assert [(e.row_id, e.error_code) for e in row_errors(settings, name)] == [(CORRUPT, "undecodable")]
    (row,) = [r for r in json.loads(cli(settings, "status", "--json", max_seconds=5)[1]) if r["dataset_name"] == name]
    assert (row["state"], row["rows_done"], row["row_errors"]) == ("complete", SHORT + LONG + 1, 1)

    # the same as a copy made with the raised limit from the start: MP3s, JSONs and manifests
    fresh_request, fresh = copy_with_errors(tmp_path / "fresh", max_seconds=5)
    assert digest_tree(sync(fresh_request, fresh).dataset_dir) == digest_tree(report.dataset_dir)

    code, out = cli(settings, "retry", name, "--code", "too_long", max_seconds=5)
    assert (code, out.strip()) == (0, f"{name}: no row errors of code 'too_long' to retry.")
    code, out = cli(settings, "retry", name, "--json", max_seconds=5)
    assert code == 1, "a row that fails again fails the command"
    assert json.loads(out) == {"dataset_name": name, "retried": [CORRUPT], "still_failing": {str(CORRUPT): "undecodable"}}


def test_retry_of_a_copy_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    _, settings = copy_with_errors(tmp_path, max_seconds=0.5)
    result = CliRunner().invoke(app, ["retry", "nope"], env={"STORAGE_ROOT": str(settings.storage_root),
                                                             "STATE_DIR": str(settings.state_dir)})
    assert result.exit_code == 1 and "no dataset 'nope'" in str(result.exception)
