"""The damage matrix: every file hugflow reads from a copy or from STATE_DIR, damaged every way a disk or a hand can
damage it, under every command that reads it.

Each case ends in a known error (which the CLI prints as one line naming what to do) or recovers; never another
exception (a traceback), never a hang (each case runs under a deadline), never a file written or deleted outside
the copy (the links point at a folder whose every byte is checked afterwards).

The commands run through the Python API in this process, on the session's Ray: what the CLI calls, without a Ray
start per case.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hugflow_ray import api
from hugflow_ray.errors import HugflowError
from hugflow_ray.pipeline.progress import read_progress
from hugflow_ray.settings import Settings, load_settings
from tests import datasets_fixtures as fx
from tests.conftest import HubFixture
from tests.file_server import FileServer

pytestmark = [pytest.mark.hub, pytest.mark.usefixtures("ray_session")]

HUB_COPY = "org__calls__split_train__rev_main"
KEPT_COPY = "catalog__midi"
DEADLINE_SECONDS = 120
SPARSE_BYTES = 1 << 30
MIDI = {"midi/a.mid": b"MThd" + bytes(60), "midi/sub/b.mid": b"MThd" + bytes(90)}


@dataclass(frozen=True)
class World:
    """One copy of the template: settings, the request files, and the folder links lead to."""

    root: Path
    settings: Settings
    add: Path
    remove: Path
    outside: Path


def _settings(root: Path, hub: HubFixture) -> Settings:
    return load_settings(hf_endpoint=hub.endpoint, storage_root=root / "datasets", state_dir=root / "state",
                         processed_root=root / "processed", catalog_path=root / "catalog.yaml",
                         hugflow_tier="minimal", max_storage_gb=1.0)


@pytest.fixture(scope="module")
def template(hub: HubFixture, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A storage root with a Hub copy and a kept URL copy, their state, a catalog and requests, made once."""
    zipped = fx.zip_bytes(MIDI)
    with FileServer({"/midi.zip": zipped}) as server:
        root = tmp_path_factory.mktemp("template")
        (root / "requests" / "add").mkdir(parents=True)
        (root / "requests" / "remove").mkdir(parents=True)
        (root / "requests" / "add" / "calls.yaml").write_text("hf_id: org/calls\ndescription: d\n")
        (root / "remove.yaml").write_text("hf_id: org/calls\nreason: r\n")
        (root / "catalog.yaml").write_text(
            "tiers: [minimal]\ndatasets:\n  - name: midi\n    description: MIDI files\n    licence: CC-BY-4.0\n"
            "    tier: minimal\n    priority: 1\n    size_gb: 0.0001\n    data: files\n    source:\n"
            f"      url: {server.url('/midi.zip')}\n      sha256: {hashlib.sha256(zipped).hexdigest()}\n"
            f"      size: {len(zipped)}\n")
        settings = _settings(root, hub)
        assert api.sync(root / "requests" / "add" / "calls.yaml", settings).rows_done == 12
        assert api.catalog_apply(settings, tier="minimal").ok
        yield root


def _world(template: Path, hub: HubFixture, root: Path) -> World:
    """A copy of the template under ``root``, and a folder outside it that links may lead to."""
    shutil.copytree(template, root / "world", symlinks=True)
    outside = root / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("not hugflow's")
    (outside / "precious.parquet").write_bytes(b"PAR1" + bytes(100) + b"PAR1")
    return World(root / "world", _settings(root / "world", hub), root / "world" / "requests" / "add" / "calls.yaml",
                 root / "world" / "remove.yaml", outside)


# --- the files ------------------------------------------------------------------------------------------------


def _one(folder: Path, pattern: str) -> Path:
    (found,) = sorted(folder.glob(pattern))[:1]
    return found


FILES: dict[str, Callable[[World], Path]] = {
    "status": lambda w: w.settings.storage_root / HUB_COPY / ".hugflow" / "status.json",
    "fingerprint": lambda w: w.settings.storage_root / HUB_COPY / ".hugflow" / "meta.json",
    "part-rows": lambda w: w.settings.storage_root / HUB_COPY / ".hugflow" / "part_rows.jsonl",
    "ledger-part": lambda w: _one(w.settings.storage_root / HUB_COPY / ".hugflow" / "ledger", "part-*.parquet"),
    "row-json": lambda w: w.settings.storage_root / HUB_COPY / "json" / "3.json",
    "row-mp3": lambda w: _one(w.settings.storage_root / HUB_COPY / "audio", "*/*.mp3"),
    "processed-link": lambda w: w.settings.processed_root / HUB_COPY,
    "kept-index": lambda w: w.settings.storage_root / KEPT_COPY / ".hugflow" / "files.parquet",
    "kept-status": lambda w: w.settings.storage_root / KEPT_COPY / ".hugflow" / "status.json",
    "progress": lambda w: w.settings.state_dir / "progress" / f"{HUB_COPY}.json",
    "lock": lambda w: w.settings.state_dir / "locks" / f"{HUB_COPY}.lock",
    "lock-holder": lambda w: w.settings.state_dir / "locks" / f"{HUB_COPY}.holder.json",
}


# --- the damage -----------------------------------------------------------------------------------------------


def _replace(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)


def _garbage(path: Path, world: World) -> None:
    _replace(path)
    path.write_bytes(b"\xff\xfe not text \x00\xc3\x28 {\"a\": " + os.urandom(64))


def _empty(path: Path, world: World) -> None:
    _replace(path)
    path.write_bytes(b"")


def _truncated(path: Path, world: World) -> None:
    data = path.read_bytes() if path.is_file() else b'{"dataset_name": "x", "state": "comp'
    _replace(path)
    path.write_bytes(data[: max(1, len(data) // 2)])


def _directory(path: Path, world: World) -> None:
    _replace(path)
    path.mkdir()
    (path / "inside").write_text("a folder where a file was")


def _link_out(path: Path, world: World) -> None:
    _replace(path)
    path.symlink_to(world.outside / ("precious.parquet" if path.suffix == ".parquet" else "precious.txt"))


def _fifo(path: Path, world: World) -> None:
    _replace(path)
    os.mkfifo(path)


def _sparse(path: Path, world: World) -> None:
    _replace(path)
    with path.open("wb") as f:
        f.truncate(SPARSE_BYTES)


DAMAGE: dict[str, Callable[[Path, World], None]] = {
    "garbage": _garbage, "empty": _empty, "truncated": _truncated, "directory": _directory, "link-out": _link_out,
    "fifo": _fifo, "sparse-1GB": _sparse,
}


# --- the commands ---------------------------------------------------------------------------------------------


def _status(w: World) -> None:
    for row in api.status(w.settings):
        read_progress(w.settings.state_dir, row.dataset_name)


def _verify(w: World, *, repair: bool) -> None:
    for name in (HUB_COPY, KEPT_COPY):
        try:
            report = api.verify(w.settings, name)
            if repair and not report.ok:
                api.repair(w.settings, name, report)
        except HugflowError:
            continue  # one line for this copy; verify --all goes on with the next


def _reconcile(w: World) -> None:
    planned = api.reconcile_plan(w.settings, requests_dir=w.root / "requests", tier="minimal")
    api.reconcile_apply(w.settings, planned)


COMMANDS: dict[str, Callable[[World], object]] = {
    "status": _status,
    "local-sync": lambda w: api.sync(w.add, w.settings),
    "verify": lambda w: _verify(w, repair=False),
    "verify --repair": lambda w: _verify(w, repair=True),
    "remove": lambda w: api.remove(w.remove, w.settings),
    "catalog status": lambda w: api.catalog_status(w.settings),
    "reconcile --apply": _reconcile,
}


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _run(command: Callable[[World], object], world: World, damaged: Path) -> BaseException | None:
    """The command's exception (None when it returned), within the deadline; a FIFO it still waits on is opened for
    writing and closed once the deadline passed, so that the test fails instead of hanging."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            command(world)
            outcome.append(None)
        except BaseException as e:  # noqa: BLE001 - judged below
            outcome.append(e)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(DEADLINE_SECONDS)
    if worker.is_alive():
        if damaged.is_fifo():
            os.close(os.open(damaged, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(DEADLINE_SECONDS)
        pytest.fail(f"hung for {DEADLINE_SECONDS} s on a damaged {damaged.name}")
    return outcome[0]


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("file", FILES)
def test_every_command_meets_a_damaged_state_file_with_one_line_or_recovers(template: Path, hub: HubFixture,
                                                                           tmp_path: Path, file: str,
                                                                           damage: str) -> None:
    """Each command meets the damage on a world of its own (one command's recovery never hides the damage from
    the next)."""
    for number, (name, command) in enumerate(COMMANDS.items()):
        world = _world(template, hub, tmp_path / str(number))
        path = FILES[file](world)
        DAMAGE[damage](path, world)
        outside = _snapshot(world.outside)
        error = _run(command, world, path)
        assert error is None or isinstance(error, HugflowError), (
            f"{name} on a {damage} {file}: {type(error).__name__}: {error}")
        named = (path.name, HUB_COPY, KEPT_COPY, "org/calls")
        assert error is None or any(n in str(error) for n in named), f"{name} on a {damage} {file}: {error}"
        assert _snapshot(world.outside) == outside, f"{name} on a {damage} {file} changed files outside the copy"
