"""The dataset manager end to end: a catalog over olah repos and URL sources on a loopback file server, tiers under a
storage budget, the licence policy, reconcile, and the CLI around them."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hugflow_ray.adapters.hub import Hub
from hugflow_ray.api import status as store_status
from hugflow_ray.catalog import manager, reconcile
from hugflow_ray.catalog.manager import Outcome
from hugflow_ray.cli.main import app
from hugflow_ray.copies.layout import URL_SOURCES, StoreLayout
from hugflow_ray.core.catalog import GB
from hugflow_ray.core.request import load_request
from hugflow_ray.core.tiers import Decision
from hugflow_ray.errors import LicenceError, RepairError
from hugflow_ray.gitops import comments
from hugflow_ray.pipeline.plan import licence_verdict, make_plan
from hugflow_ray.pipeline.sync import sync
from hugflow_ray.settings import Settings, load_settings
from tests import datasets_fixtures as fx
from tests.conftest import HubFixture, hub_request
from tests.file_server import FileServer

pytestmark = [pytest.mark.hub, pytest.mark.usefixtures("ray_session")]

BUDGET_GB = 0.005  # 5 MB: every small entry fits, the 1 GB one does not
MIDI = {"midi/song1.mid": b"MThd\x00\x00\x00\x06" + bytes(range(64)), "midi/sub/song2.mid": b"MThd" + b"\x01" * 90,
        "README.txt": b"outside the directory the entry reads"}


def _tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass(frozen=True)
class Sources:
    server: FileServer
    files: dict[str, bytes]

    def url_source(self, path: str, *, sha256: str | None = None, extra: str = "") -> str:
        data = self.files[path]
        digest = sha256 or hashlib.sha256(data).hexdigest()
        return (f"      url: {self.server.url(path)}\n      sha256: {digest}\n      size: {len(data)}\n{extra}")


@pytest.fixture(scope="module")
def sources() -> Iterator[Sources]:
    files = {
        "/speech.tar.gz": _tar_gz(fx.audiofolder_files()),
        "/midi.zip": fx.zip_bytes(MIDI),
        "/midi-again.zip": fx.zip_bytes(MIDI),
        "/files/data": fx.zip_bytes(MIDI),  # a URL whose file name is the extraction's own folder name
        "/files/.data.extracting": fx.zip_bytes(MIDI),  # ... and its temporary one
        "/clips.parquet": fx.parquet_bytes(fx.speech_records(4, seconds=0.1), fx.speech_features(), row_group_size=4),
        # the same file name at a new version: other rows (the first three are the same, the fourth differs)
        "/v2/clips.parquet": fx.parquet_bytes(fx.speech_records(3, seconds=0.1) + fx.speech_records(
            2, start=10, seconds=0.3), fx.speech_features(), row_group_size=5),
    }
    with FileServer(files) as server:
        yield Sources(server, files)


def entry(name: str, *, tier: str, priority: int, licence: str, size_gb: float, source: str, extra: str = "") -> str:
    return (f"  - name: {name}\n    description: {name} for the tests\n    licence: {licence}\n    tier: {tier}\n"
            f"    priority: {priority}\n    size_gb: {size_gb}\n{extra}    source:\n{source}")


def hub_source(hf_id: str) -> str:
    return f"      hf_id: {hf_id}\n"


def write_catalog(root: Path, *entries: str, tiers: str = "[minimal, balanced, full]") -> Path:
    path = root / "catalog.yaml"
    path.write_text(f"tiers: {tiers}\ndatasets:\n" + "".join(entries))
    return path


def seven_entries(sources: Sources) -> list[str]:
    """Seven entries over three tiers: two Hub and one URL source that fit, one that does not, one refused licence,
    a small URL source after the big one, and one of the largest tier only."""
    return [
        entry("calls", tier="minimal", priority=1, licence="CC-BY-4.0", size_gb=0.0005,
              source=hub_source("org/calls")),
        entry("midi", tier="minimal", priority=2, licence="CC-BY-4.0", size_gb=0.0001, extra="    data: files\n",
              source=sources.url_source("/midi.zip", extra="      directory: midi\n")),
        entry("speech-url", tier="balanced", priority=1, licence="CC0-1.0", size_gb=0.0005,
              source=sources.url_source("/speech.tar.gz")),
        entry("big", tier="balanced", priority=2, licence="CC-BY-4.0", size_gb=1, source=hub_source("org/shards")),
        entry("nc", tier="balanced", priority=2, licence="CC-BY-NC-4.0", size_gb=0.0001,
              source=hub_source("org/nc-speech")),
        entry("clips", tier="balanced", priority=3, licence="MIT", size_gb=0.0005,
              source=sources.url_source("/clips.parquet")),
        entry("textonly", tier="full", priority=1, licence="MIT", size_gb=0.0001, source=hub_source("org/textonly")),
    ]


@pytest.fixture
def settings(hub: HubFixture, tmp_path: Path) -> Settings:
    return load_settings(hf_endpoint=hub.endpoint, storage_root=tmp_path / "datasets", state_dir=tmp_path / "state",
                         processed_root=tmp_path / "processed", catalog_path=tmp_path / "catalog.yaml",
                         max_storage_gb=BUDGET_GB)


def cli_env(settings: Settings) -> dict[str, str]:
    """The environment a `hugflow` command needs to see ``settings``."""
    return {"STORAGE_ROOT": str(settings.storage_root), "STATE_DIR": str(settings.state_dir),
            "HF_ENDPOINT": settings.hf_endpoint, "CATALOG_PATH": str(settings.catalog_path),
            "MAX_STORAGE_GB": str(BUDGET_GB)}


def _files(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``root``: its modification time and bytes."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_a_tier_comes_in_by_priority_within_the_budget_and_a_second_apply_touches_nothing(
        settings: Settings, sources: Sources, tmp_path: Path) -> None:
    write_catalog(tmp_path, *seven_entries(sources))

    minimal = manager.plan(settings, tier="minimal")
    assert [p.entry.name for p in minimal.tier.entries] == ["calls", "midi"]

    decided = manager.plan(settings, tier="balanced")
    decisions = {p.entry.name: p.decision for p in decided.tier.entries}
    assert [p.entry.name for p in decided.tier.entries] == ["calls", "speech-url", "midi", "big", "nc", "clips"]
    assert decisions == {"calls": Decision.BRING_IN, "speech-url": Decision.BRING_IN, "midi": Decision.BRING_IN,
                         "big": Decision.OVER_BUDGET, "nc": Decision.LICENCE, "clips": Decision.BRING_IN}
    assert decided.tier.total_bytes <= BUDGET_GB * GB
    assert decided.facts["midi"].source_bytes == len(sources.files["/midi.zip"])

    started: list[str] = []
    report = manager.apply(settings, tier="balanced", on_entry=lambda p: started.append(p.entry.name))
    assert started == ["calls", "speech-url", "midi", "clips"]
    outcomes = {r.name: r.outcome for r in report.results}
    assert outcomes == {"calls": Outcome.SYNCED, "speech-url": Outcome.SYNCED, "midi": Outcome.SYNCED,
                        "big": Outcome.SKIPPED, "nc": Outcome.SKIPPED, "clips": Outcome.SYNCED}, report.results
    assert report.ok
    assert manager.storage_used(settings) <= BUDGET_GB * GB
    copies = {row.dataset_name: row for row in store_status(settings)}
    assert {copies[r.dataset_name].state.value for r in report.results if r.outcome is Outcome.SYNCED} == {"complete"}
    assert copies["catalog__speech-url"].rows_total == 3 and copies["catalog__clips"].rows_total == 4
    kept = settings.storage_root / "catalog__midi" / "files"
    assert {str(p.relative_to(kept)) for p in kept.rglob("*") if p.is_file()} == {"song1.mid", "sub/song2.mid"}
    assert (kept / "sub" / "song2.mid").read_bytes() == MIDI["midi/sub/song2.mid"]
    assert copies["catalog__midi"].rows_total == 2, "a kept copy's rows are its files"
    assert not (settings.storage_root / URL_SOURCES).exists() or not any(
        (settings.storage_root / URL_SOURCES).iterdir()), "downloads are deleted once their copy is complete"

    before = _files(settings.storage_root)
    again: list[str] = []
    second = manager.apply(settings, tier="balanced", on_entry=lambda p: again.append(p.entry.name))
    assert again == []
    assert {r.name: r.outcome for r in second.results if r.outcome is Outcome.PRESENT}.keys() == {
        "calls", "speech-url", "midi", "clips"}
    assert _files(settings.storage_root) == before

    summary = manager.status(settings)
    states = {e.name: e.state for e in summary.entries}
    assert states == {"calls": "complete", "midi": "complete", "speech-url": "complete", "big": "absent",
                      "nc": "absent", "clips": "complete", "textonly": "absent"}
    assert summary.tiers["minimal"] < summary.tiers["balanced"] == summary.tiers["full"] == summary.used_bytes
    assert summary.budget_bytes == BUDGET_GB * GB


def test_a_url_source_that_fails_its_checksum_fails_alone_and_leaves_nothing(
        settings: Settings, sources: Sources, tmp_path: Path) -> None:
    wrong = "0" * 63 + "f"
    write_catalog(tmp_path,
                  entry("bad", tier="minimal", priority=1, licence="MIT", size_gb=0.0001, extra="    data: files\n",
                        source=sources.url_source("/midi-again.zip", sha256=wrong)),
                  entry("good", tier="minimal", priority=2, licence="MIT", size_gb=0.0001, extra="    data: files\n",
                        source=sources.url_source("/midi.zip")))
    report = manager.apply(settings, tier="minimal")
    results = {r.name: r for r in report.results}
    assert results["good"].outcome is Outcome.SYNCED
    assert results["bad"].outcome is Outcome.FAILED and not report.ok
    actual = hashlib.sha256(sources.files["/midi-again.zip"]).hexdigest()
    assert wrong in results["bad"].detail and actual in results["bad"].detail
    bad_source = StoreLayout.of(settings).url_source("bad")
    assert not bad_source.exists(), "nothing to resume: the failed entry's working folder is gone, not budgeted"
    assert (settings.storage_root / "catalog__bad" / "files").exists() is False


def test_licences_allowed_refused_overridden_and_disagreeing_with_the_card(settings: Settings, tmp_path: Path,
                                                                           hub: HubFixture) -> None:
    override = "    licence_override: internal research only, cleared by legal on 2026-11-30\n"
    write_catalog(
        tmp_path,
        entry("allowed", tier="minimal", priority=1, licence="CC-BY-4.0", size_gb=0.0001,
              source=hub_source("org/calls")),
        entry("refused", tier="minimal", priority=1, licence="CC-BY-NC-4.0", size_gb=0.0001,
              source=hub_source("org/nc-speech")),
        entry("overridden", tier="balanced", priority=1, licence="CC-BY-NC-4.0", size_gb=0.0001, extra=override,
              source=hub_source("org/nc-speech") + f"      revision: {hub.shas['org/nc-speech']}\n"),
        entry("mislabelled", tier="minimal", priority=2, licence="MIT", size_gb=0.0001,
              source=hub_source("org/shards")),
    )
    minimal = {p.entry.name: p for p in manager.plan(settings, tier="minimal").tier.entries}
    assert minimal["allowed"].decision is Decision.BRING_IN
    assert minimal["refused"].decision is Decision.LICENCE
    assert "CC-BY-NC-4.0: refused" in minimal["refused"].reason and "licence_override" in minimal["refused"].reason
    assert minimal["mislabelled"].decision is Decision.LICENCE
    assert "MIT" in minimal["mislabelled"].reason and "CC-BY-4.0" in minimal["mislabelled"].reason

    balanced = manager.plan(settings, tier="balanced")
    overridden = next(p for p in balanced.tier.entries if p.entry.name == "overridden")
    assert overridden.decision is Decision.BRING_IN
    assert balanced.facts["overridden"].verdict.overridden
    assert "cleared by legal" in balanced.facts["overridden"].verdict.line()


def test_a_request_outside_the_policy_is_refused_until_it_carries_an_override(settings: Settings, tmp_path: Path,
                                                                              hub: HubFixture) -> None:
    path = hub_request(tmp_path, "org/nc-speech")
    with pytest.raises(LicenceError) as refused:
        sync(path, settings)
    assert "CC-BY-NC-4.0: refused" in str(refused.value) and "licence_override" in str(refused.value)
    assert not (settings.storage_root).exists() or not any(settings.storage_root.iterdir())

    path.write_text(path.read_text() + "licence_override: cleared by legal for internal research, ticket LEG-12\n")
    report = sync(path, settings)
    assert report.state.value == "complete" and report.rows_done == 3

    plan = make_plan(load_request(path), hub=Hub.from_settings(settings))
    verdict = licence_verdict(plan, settings)
    assert verdict is not None and verdict.overridden
    view = comments.PlanView(identity=plan.identity, rows=3, download_bytes=1, target="t", audio_column="audio",
                             text_column="text", licence=verdict.line())
    assert "| licence | CC-BY-NC-4.0: allowed by override (reason: cleared by legal" in comments.planned("p", view)


def test_reconcile_brings_in_removes_and_lists_unmanaged_and_a_second_run_has_nothing_to_do(
        settings: Settings, sources: Sources, tmp_path: Path) -> None:
    write_catalog(tmp_path,
                  entry("calls", tier="minimal", priority=1, licence="CC-BY-4.0", size_gb=0.0005,
                        source=hub_source("org/calls")),
                  entry("midi", tier="minimal", priority=2, licence="CC-BY-4.0", size_gb=0.0001,
                        extra="    data: files\n", source=sources.url_source("/midi.zip")))
    hub_request(tmp_path, "org/calls")  # the same dataset as the catalog's first entry: one copy
    removal = tmp_path / "requests" / "remove" / "old.yaml"
    removal.parent.mkdir(parents=True)
    removal.write_text("hf_id: org/old\nreason: superseded by org/calls\n")
    old = settings.storage_root / "org__old__split_train__rev_main"
    (old / "json").mkdir(parents=True)
    (old / "json" / "0.json").write_text("{}")
    foreign = settings.storage_root / "someone-elses"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not ours")

    first = reconcile.plan(settings, requests_dir=tmp_path / "requests", tier="minimal")
    assert [(s.action.value, s.dataset_name) for s in first.steps] == [
        ("remove", old.name), ("bring in", "org__calls__split_train__rev_main"), ("bring in", "catalog__midi")]
    assert first.unmanaged == ["someone-elses"]

    assert reconcile.apply(settings, first).ok
    assert not old.exists() and (foreign / "keep.txt").read_text() == "not ours"

    result = CliRunner().invoke(app, ["reconcile", "--tier", "minimal", "--apply", "--requests",
                                      str(tmp_path / "requests")],
                                env=cli_env(settings))
    assert result.exit_code == 0, result.output
    assert "nothing to do: 2 in place" in result.output
    assert "unmanaged someone-elses" in result.output
    as_json = CliRunner().invoke(app, ["reconcile", "--tier", "minimal", "--json", "--requests",
                                       str(tmp_path / "requests")],
                                 env=cli_env(settings))
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == {"steps": [], "left_out": [], "unmanaged": ["someone-elses"],
                                          "in_place": ["org__calls__split_train__rev_main", "catalog__midi"]}


def test_named_entries_come_in_whatever_their_tier_under_the_same_budget_and_licence_rules(
        settings: Settings, sources: Sources, tmp_path: Path) -> None:
    from hugflow_ray.api import download_dataset

    write_catalog(tmp_path, *seven_entries(sources))
    env = cli_env(settings)
    planned = CliRunner().invoke(app, ["catalog", "plan", "clips", "midi", "nc", "big", "--json"], env=env)
    assert planned.exit_code == 0, planned.output
    plan = json.loads(planned.stdout)
    assert plan["tier"] is None and plan["named"] == ["midi", "big", "nc", "clips"], "highest priority first"
    assert {e["name"]: e["decision"] for e in plan["entries"]} == {
        "midi": "bring in", "big": "over budget", "nc": "licence refused", "clips": "bring in"}

    applied = CliRunner().invoke(app, ["catalog", "apply", "clips", "midi", "nc", "big"], env=env)
    assert applied.exit_code == 0, applied.output
    assert {(r.dataset_name, r.state.value) for r in store_status(settings)} == {
        ("catalog__clips", "complete"), ("catalog__midi", "complete")}, "only the named entries that may come in"
    outcomes = {line.split()[0]: line.split()[1] for line in applied.stdout.splitlines()}
    assert outcomes == {"midi": "synced", "big": "skipped", "nc": "skipped", "clips": "synced"}

    assert download_dataset("speech-url", settings).outcome is Outcome.SYNCED, "the seed's download_dataset(name)"
    again = download_dataset("clips", settings)
    assert (again.outcome, again.dataset_name) == (Outcome.PRESENT, "catalog__clips")

    unknown = CliRunner().invoke(app, ["catalog", "apply", "clipz"], env=env)
    assert unknown.exit_code == 1 and "no entry 'clipz'" in str(unknown.exception)
    assert "calls, midi, speech-url, big, nc, clips, textonly" in str(unknown.exception)
    both = CliRunner().invoke(app, ["catalog", "plan", "clips", "--tier", "minimal"], env=env)
    assert both.exit_code == 1 and "both a tier and entry names" in str(both.exception)


def test_catalog_cli_plan_and_status_print_the_plan_and_the_budget(settings: Settings, sources: Sources,
                                                                  tmp_path: Path) -> None:
    write_catalog(tmp_path, *seven_entries(sources))
    env = cli_env(settings)
    planned = CliRunner().invoke(app, ["catalog", "plan", "--tier", "balanced"], env=env)
    assert planned.exit_code == 0, planned.output
    lines = planned.stdout.splitlines()
    assert lines[0].startswith("tier balanced (minimal + balanced); budget 0.01 GB")
    assert [line.split()[0] for line in lines[2:8]] == ["calls", "speech-url", "midi", "big", "nc", "clips"]
    assert "  big: over budget: needs 1.00 GB" in planned.output
    assert "  nc: CC-BY-NC-4.0: refused" in planned.output
    assert lines[-1].startswith("total ") and lines[-1].endswith("4 to sync")
    as_json = CliRunner().invoke(app, ["catalog", "plan", "--tier", "balanced", "--json"], env=env)
    assert as_json.exit_code == 0, as_json.output
    plan = json.loads(as_json.stdout)
    assert [e["name"] for e in plan["entries"]] == [line.split()[0] for line in lines[2:8]]
    included = [e for e in plan["entries"] if e["included"]]
    assert [e["name"] for e in included] == plan["to_sync"] and len(included) == 4
    assert plan["total_bytes"] == included[-1]["running_bytes"] <= plan["budget_bytes"] == BUDGET_GB * GB
    big = next(e for e in plan["entries"] if e["name"] == "big")
    assert big["decision"] == "over budget" and big["running_bytes"] is None and big["needed_bytes"] >= GB

    shown = CliRunner().invoke(app, ["catalog", "status", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert [e["state"] for e in data["entries"]] == ["absent"] * 7 and data["budget_bytes"] == BUDGET_GB * GB

    no_tier = CliRunner().invoke(app, ["catalog", "plan"], env=env)
    assert no_tier.exit_code == 1
    assert "no tier chosen" in str(no_tier.exception) and "HUGFLOW_TIER" in str(no_tier.exception)


def test_verify_finds_a_flipped_byte_and_a_deleted_file_and_repair_restores_both_from_the_source(
        settings: Settings, sources: Sources, tmp_path: Path) -> None:
    write_catalog(tmp_path,
                  entry("clips", tier="minimal", priority=1, licence="MIT", size_gb=0.0005,
                        source=sources.url_source("/clips.parquet")),
                  entry("midi", tier="minimal", priority=2, licence="CC-BY-4.0", size_gb=0.0001,
                        extra="    data: files\n", source=sources.url_source("/midi.zip")))
    assert manager.apply(settings, tier="minimal").ok
    kept_files = {p.relative_to(settings.storage_root / "catalog__midi" / "files").as_posix()
                  for p in (settings.storage_root / "catalog__midi" / "files").rglob("*") if p.is_file()}
    assert kept_files == set(MIDI), "exactly the archive's files are kept"
    made = _files(settings.storage_root)
    mp3 = next((settings.storage_root / "catalog__clips" / "audio").glob("*/*.mp3"))
    data = bytearray(mp3.read_bytes())
    data[len(data) // 2] ^= 0xFF
    mp3.write_bytes(bytes(data))
    kept = settings.storage_root / "catalog__midi" / "files" / "midi" / "sub" / "song2.mid"
    kept.unlink()
    env = {"STORAGE_ROOT": str(settings.storage_root), "STATE_DIR": str(settings.state_dir),
           "CATALOG_PATH": str(settings.catalog_path)}

    found = CliRunner().invoke(app, ["verify", "--all"], env=env)
    assert found.exit_code == 1, found.output
    assert f"changed: audio/{mp3.parent.name}/{mp3.name} (row " in found.stdout
    assert "missing: files/midi/sub/song2.mid" in found.stdout

    repaired = CliRunner().invoke(app, ["verify", "--all", "--repair"], env=env)
    assert repaired.exit_code == 0, repaired.output
    assert "catalog__clips: repaired 1 rows" in repaired.stdout and "catalog__midi: repaired 1 rows" in repaired.stdout
    after = _files(settings.storage_root)
    assert {k: v[1] for k, v in after.items() if "/.hugflow/" not in k and not k.startswith(".sources")} == {
        k: v[1] for k, v in made.items() if "/.hugflow/" not in k and not k.startswith(".sources")}
    clean = CliRunner().invoke(app, ["verify", "--all"], env=env)
    assert clean.exit_code == 0, clean.output


def test_a_kept_copy_never_hashes_or_writes_outside_it_for_an_index_row_or_a_linked_folder(
        settings: Settings, sources: Sources, tmp_path: Path) -> None:
    from hugflow_ray.copies.kept import KeptFile, read_index, write_index

    write_catalog(tmp_path, entry("midi", tier="minimal", priority=2, licence="CC-BY-4.0", size_gb=0.0001,
                                  extra="    data: files\n", source=sources.url_source("/midi.zip")))
    assert manager.apply(settings, tier="minimal").ok
    copy = settings.storage_root / "catalog__midi"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "hostname").write_text("the host's own file")
    index = read_index(copy)
    write_index(copy, [*index, KeptFile("../../../outside/hostname", 19, "0" * 64)])
    report = manager.verify_copy(settings, "catalog__midi")
    assert not report.ok and "is not a plain path inside" in report.unsafe[0]
    assert report.bytes_checked == sum(f.size for f in index), "the outside file was not hashed"
    with pytest.raises(RepairError, match="nothing was changed"):
        manager.repair_copy(settings, "catalog__midi", report)

    write_index(copy, index)
    shutil.rmtree(copy / "files" / "midi" / "sub")
    (copy / "files" / "midi" / "sub").symlink_to(outside)
    report = manager.verify_copy(settings, "catalog__midi")
    assert not report.ok and "sub is a symbolic link" in report.unsafe[0]
    with pytest.raises(RepairError, match="nothing was changed"):
        manager.repair_copy(settings, "catalog__midi", report)
    assert sorted(p.name for p in outside.iterdir()) == ["hostname"]


@pytest.mark.parametrize("path", ["/files/data", "/files/.data.extracting"])
def test_a_url_whose_file_name_is_the_extractions_own_is_brought_in(settings: Settings, sources: Sources,
                                                                   tmp_path: Path, path: str) -> None:
    write_catalog(tmp_path, entry("midi", tier="minimal", priority=2, licence="CC-BY-4.0", size_gb=0.0001,
                                  extra="    data: files\n",
                                  source=sources.url_source(path, extra="      archive: zip\n")))
    applied = manager.apply(settings, tier="minimal")
    assert applied.ok, [r.detail for r in applied.results]
    kept = settings.storage_root / "catalog__midi" / "files"
    assert {p.relative_to(kept).as_posix() for p in kept.rglob("*") if p.is_file()} == set(MIDI)


def test_a_url_audio_copy_is_pinned_to_its_source_and_a_new_version_is_made_again_never_mixed(
        settings: Settings, sources: Sources, tmp_path: Path) -> None:
    from hugflow_ray.copies.status import read_status

    def catalog(path: str) -> None:
        write_catalog(tmp_path, entry("clips", tier="minimal", priority=1, licence="MIT", size_gb=0.0005,
                                      source=sources.url_source(path)))

    catalog("/clips.parquet")
    assert manager.apply(settings, tier="minimal").ok
    copy = settings.storage_root / "catalog__clips"
    status = read_status(copy)
    assert status is not None and status.identity.source == sources.server.url("/clips.parquet")
    assert (status.identity.sha, status.identity.license) == (
        hashlib.sha256(sources.files["/clips.parquet"]).hexdigest(), "MIT")

    catalog("/v2/clips.parquet")  # the entry moves to a new version of its file
    planned = manager.plan(settings, tier="minimal")
    (line,) = planned.tier.entries
    assert line.decision is Decision.BRING_IN and "its source changed" in line.reason
    report = manager.verify_copy(settings, "catalog__clips")
    with pytest.raises(RepairError, match="never mixes"):
        manager.repair_copy(settings, "catalog__clips", report)
    assert manager.apply(settings, tier="minimal").ok
    fresh = tmp_path / "fresh"
    fresh_settings = load_settings(storage_root=fresh / "datasets", state_dir=fresh / "state",
                                   processed_root=fresh / "processed", catalog_path=settings.catalog_path)
    assert manager.apply(fresh_settings, tier="minimal").ok
    outputs = {k: v[1] for k, v in _files(copy).items() if not k.startswith(".hugflow")}
    assert outputs == {k: v[1] for k, v in _files(fresh / "datasets" / "catalog__clips").items()
                       if not k.startswith(".hugflow")}, "identical to a copy made from the new version alone"
    assert len([k for k in outputs if k.startswith("json/")]) == 5
    assert manager.verify_copy(settings, "catalog__clips").ok


def test_the_readme_shows_what_the_example_catalog_plans() -> None:
    """The worked example in the README is the real output of the repository's catalog.yaml, offline."""
    repo = Path(__file__).resolve().parents[2]
    result = CliRunner().invoke(app, ["catalog", "plan", "--tier", "balanced", "--offline", "--catalog",
                                      str(repo / "catalog.yaml")],
                                env={"MAX_STORAGE_GB": "150", "STORAGE_ROOT": "datasets"})
    assert result.exit_code == 0, result.output
    readme = (repo / "README.md").read_text()
    assert f"$ MAX_STORAGE_GB=150 hugflow catalog plan --tier balanced --offline\n{result.stdout}```" in readme
