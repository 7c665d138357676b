"""The catalog file: a valid catalog is read into its records; a malformed or hostile one is refused with the file,
line, field path and fix, by the same strict rules as a request."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from hugflow_ray.core.catalog import (
    GB,
    MAX_CATALOG_BYTES,
    ArchiveFormat,
    Catalog,
    CatalogEntry,
    DataKind,
    UrlSource,
    load_catalog,
    parse_catalog,
)
from hugflow_ray.core.request import HubRef
from hugflow_ray.errors import CatalogError, RequestError

SHA = "3f0c" * 16
CATALOG_PATH = Path("catalog.yaml")

FULL = f"""\
# the catalog of the tests: every field, both sources, both kinds of data
tiers: [minimal, balanced, comprehensive]
datasets:
  - name: speech-small
    description: Read speech for the TTS baseline.
    licence: CC-BY-4.0
    tier: minimal
    priority: 2
    size_gb: 2.6
    source:
      hf_id: org/speech
      revision: "1.10"
      subset: clean
      split: train.100
  - name: midi
    description: |
      MIDI performances.
      Kept as they are.
    licence: CC0-1.0
    tier: minimal
    priority: 1
    size_gb: 0.25
    data: files
    source:
      url: https://example.org/data/midi.tar.gz
      sha256: {SHA}
      size: 250000000
      directory: ./midi/train/
  - name: podcasts
    description: Conversational speech.
    licence: CC-BY-NC-4.0
    licence_override: Internal evaluation only, approved by legal in 2026-03
    tier: balanced
    priority: 1
    size_gb: 40
    audio_column: recording
    text_column: transcript
    source:
      hf_id: org/podcasts
  - name: scores
    description: Sheet music as MusicXML.
    licence: MIT
    tier: balanced
    priority: 1
    size_gb: 1.5
    data: files
    source:
      url: http://mirror.example.org:8080/scores.zip?download=1
      sha256: {SHA[::-1]}
      size: 1500000000
      archive: zip
  - name: speech-large
    description: The rest of the read speech.
    licence: cc-by-4.0
    tier: comprehensive
    priority: 1
    size_gb: 300
    data: audio
    source:
      hf_id: org/speech
      revision: "1.10"
      subset: other
  - name: lexicon
    description: A pronunciation lexicon, one parquet file.
    licence: CC-BY-SA-4.0
    tier: comprehensive
    priority: 3
    size_gb: 0.001
    data: files
    source:
      url: https://example.org/lexicon.parquet
      sha256: {"ab" * 32}
      size: 1000000
"""


def test_a_full_catalog_is_read_into_its_records() -> None:
    catalog = parse_catalog(FULL, catalog_path=CATALOG_PATH)
    assert catalog.tiers == ("minimal", "balanced", "comprehensive")
    assert catalog.path == CATALOG_PATH
    assert [e.name for e in catalog.entries] == ["speech-small", "midi", "podcasts", "scores", "speech-large",
                                                 "lexicon"]
    assert catalog.entries[0] == CatalogEntry(
        name="speech-small", description="Read speech for the TTS baseline.",
        source=HubRef("org/speech", revision="1.10", subset="clean", split="train.100"),
        licence="CC-BY-4.0", size_bytes=2_600_000_000, tier="minimal", priority=2, line=4,
    )
    assert catalog.entries[1] == CatalogEntry(
        name="midi", description="MIDI performances.\nKept as they are.",
        source=UrlSource("https://example.org/data/midi.tar.gz", sha256=SHA, size=250_000_000,
                         archive=ArchiveFormat.TAR_GZ, directory="midi/train"),
        licence="CC0-1.0", size_bytes=250_000_000, tier="minimal", priority=1, data=DataKind.FILES, line=15,
    )
    podcasts = catalog.entries[2]
    assert podcasts.licence_override == "Internal evaluation only, approved by legal in 2026-03"
    assert (podcasts.audio_column, podcasts.text_column) == ("recording", "transcript")
    assert podcasts.audio_column_explicit and podcasts.text_column_explicit
    assert podcasts.source == HubRef("org/podcasts") and podcasts.size_bytes == 40 * GB
    assert catalog.entries[3].source == UrlSource("http://mirror.example.org:8080/scores.zip?download=1",
                                                  sha256=SHA[::-1], size=1_500_000_000, archive=ArchiveFormat.ZIP)
    assert catalog.entries[4].licence == "cc-by-4.0"  # as written; the licence policy normalises it
    assert catalog.entries[4].data is DataKind.AUDIO and not catalog.entries[4].audio_column_explicit
    assert catalog.entries[5].source == UrlSource("https://example.org/lexicon.parquet", sha256="ab" * 32,
                                                  size=1_000_000, archive=ArchiveFormat.NONE)
    assert catalog.entries[5].size_bytes == 1_000_000
    assert catalog.entry("scores") is catalog.entries[3] and catalog.entry("nope") is None


def test_tiers_are_cumulative_and_ordered_by_priority_then_file_order() -> None:
    catalog = parse_catalog(FULL)
    names = {tier: [e.name for e in catalog.tier_entries(tier)] for tier in catalog.tiers}
    assert names["minimal"] == ["midi", "speech-small"]
    assert names["balanced"] == ["midi", "podcasts", "scores", "speech-small"]
    assert names["comprehensive"] == ["midi", "podcasts", "scores", "speech-large", "speech-small", "lexicon"]
    with pytest.raises(KeyError):
        catalog.tier_entries("huge")


def test_a_catalog_file_is_loaded_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(FULL)
    catalog = load_catalog(path)
    assert isinstance(catalog, Catalog) and catalog.path == path and len(catalog.entries) == 6


HEADER = "tiers: [minimal, balanced]\ndatasets:\n"  # lines 1-2; an entry starts on line 3
HUB = """\
  - name: speech
    description: Read speech.
    licence: CC-BY-4.0
    tier: minimal
    priority: 1
    size_gb: 2.5
    source:
      hf_id: org/speech
"""  # lines 3-10: name 3, description 4, licence 5, tier 6, priority 7, size_gb 8, source 9, hf_id 10
URL = f"""\
  - name: midi
    description: MIDI files.
    licence: CC0-1.0
    tier: minimal
    priority: 2
    size_gb: 0.5
    data: files
    source:
      url: https://example.org/midi.tar.gz
      sha256: {SHA}
      size: 12345
"""  # lines 3-13: ... data 9, source 10, url 11, sha256 12, size 13
SECOND = 11  # the first line of an entry after HUB


def hub(old: str = "", new: str = "", *, then: str = "") -> str:
    """The one-entry Hub catalog with ``old`` replaced by ``new``, and ``then`` after it."""
    assert old in HUB
    return HEADER + HUB.replace(old, new, 1) + then


def url(old: str = "", new: str = "", *, then: str = "") -> str:
    """The one-entry URL catalog with ``old`` replaced by ``new``, and ``then`` after it (in its source)."""
    assert old in URL
    return HEADER + URL.replace(old, new, 1) + then


@dataclass(frozen=True)
class Hostile:
    id: str
    text: str | bytes
    message: str
    field: str | None
    line: int | None
    fix: str


SRC = "datasets[0].source"
HOSTILE = [
    # the file as a whole
    Hostile("oversize", HEADER + HUB + "# " + "x" * MAX_CATALOG_BYTES + "\n", f"larger than {MAX_CATALOG_BYTES}",
            None, None, "shorten the descriptions"),
    Hostile("not-utf8", hub("Read speech.", "Caf").encode() + b"\xe9\n", "not UTF-8", None, None, "Save it as UTF-8"),
    Hostile("empty", "# nothing yet\n", "the file is empty", None, None, "Write 'tiers: [...]'"),
    Hostile("root-list", "- name: speech\n", "must hold a mapping", None, 1, "at the top level"),
    Hostile("syntax", hub("Read speech.", "'Read speech."), "not valid YAML", None, 11, "Fix the YAML syntax"),
    Hostile("two-documents", HEADER + HUB + "---\n" + HEADER + HUB, "several YAML documents", None, 11,
            "Keep one catalog in the file"),
    Hostile("anchor", hub("licence: CC-BY-4.0", "licence: &l CC-BY-4.0"), "anchors (&name) are not allowed", None, 5,
            "Remove the anchor"),
    Hostile("alias", hub("Read speech.", "*d"), "aliases (*name) are not allowed", None, 4, "Write the value out"),
    Hostile("merge-key", hub("    tier: minimal", "    <<: {tier: minimal}"), "merge keys (<<) are not allowed",
            "datasets[0]", 6, "Write the fields out in full"),
    Hostile("tag", hub("org/speech", "!!python/object/apply:os.system ['id']"), "YAML tags", None, 10,
            "Remove the tag"),
    Hostile("too-deep", hub("org/speech", "[[org/speech]]"), "nests lists or mappings", None, 10,
            "Nest no deeper than datasets, entry, source"),
    Hostile("billion-laughs", "a: &a [x, x]\nb: [*a, *a]\n" + HEADER + HUB, "anchors", None, 1, "Remove the anchor"),
    # the top level
    Hostile("top-key-twice", HEADER + HUB + "tiers: [big]\n", "appears twice (first on line 1)", "tiers", 11,
            "Keep one of them"),
    Hostile("top-unknown", "tier: [minimal]\ndatasets: []\n", "unknown field", "tier", 1, "Did you mean 'tiers'?"),
    Hostile("no-tiers", "datasets:\n" + HUB, "required field is missing", "tiers", None,
            "Add 'tiers: ...' to the catalog"),
    Hostile("no-datasets", "tiers: [minimal]\n", "required field is missing", "datasets", None,
            "Add 'datasets: ...' to the catalog"),
    Hostile("tiers-scalar", "tiers: minimal\ndatasets:\n" + HUB, "must be a list of at least one tier", "tiers", 1,
            "'tiers: [minimal, balanced, comprehensive]'"),
    Hostile("tiers-empty", "tiers: []\ndatasets:\n" + HUB, "at least one tier", "tiers", 1, "smallest first"),
    Hostile("tier-name-upper", "tiers: [minimal, Big]\ndatasets:\n" + HUB, "'Big' is not a tier name", "tiers[1]", 1,
            "lowercase letters"),
    Hostile("tier-name-number", "tiers: [minimal, 2]\ndatasets:\n" + HUB, "'2' is not a tier name", "tiers[1]", 1,
            "starting with a letter"),
    Hostile("tier-twice", "tiers: [minimal, big, minimal]\ndatasets:\n" + HUB, "listed twice (first as tiers[0])",
            "tiers[2]", 1, "List each tier once"),
    Hostile("datasets-empty", "tiers: [minimal]\ndatasets: []\n", "at least one dataset", "datasets", 2,
            "'- name: ...'"),
    Hostile("datasets-mapping", "tiers: [minimal]\ndatasets:\n  speech: {}\n", "must be a list", "datasets", 3,
            "an item under 'datasets:'"),
    Hostile("entry-scalar", HEADER + "  - speech\n", "must be a mapping of fields", "datasets[0]", 3,
            "indented below it"),
    # an entry's fields
    Hostile("license-spelling", hub("licence:", "license:"), "unknown field", "datasets[0].license", 5,
            "Did you mean 'licence'?"),
    Hostile("entry-key-twice", hub(then="    licence: MIT\n"), "appears twice (first on line 5)",
            "datasets[0].licence", 11, "Keep one of them"),
    Hostile("missing-name", hub("  - name: speech\n    description", "  - description"), "required field is missing",
            "datasets[0].name", 3, "Add 'name: ...' to the entry"),
    Hostile("missing-size", hub("    size_gb: 2.5\n", ""), "required field is missing", "datasets[0].size_gb", 3,
            "Add 'size_gb: ...' to the entry"),
    Hostile("name-upper", hub("name: speech", "name: Speech"), "'Speech' is not an entry name", "datasets[0].name", 3,
            "Use lowercase letters"),
    Hostile("name-too-long", hub("name: speech", "name: " + "s" * 65), "is not an entry name", "datasets[0].name", 3,
            "(64 at most)"),
    Hostile("name-twice", HEADER + HUB + HUB.replace("org/speech", "org/other"), "taken by an earlier entry (line 3)",
            "datasets[1].name", SECOND, "Give each entry its own name"),
    Hostile("description-number", hub("Read speech.", "42"), "reads '42' as a number", "datasets[0].description", 4,
            'Quote it: description: "42"'),
    Hostile("description-null", hub("Read speech.", ""), "required field is empty", "datasets[0].description", 3,
            "Add 'description: ...'"),
    Hostile("licence-bool", hub("CC-BY-4.0", "yes"), "reads 'yes' as a boolean", "datasets[0].licence", 5,
            'Quote it: licence: "yes"'),
    Hostile("licence-words", hub("CC-BY-4.0", "CC BY 4.0"), "is not a licence id", "datasets[0].licence", 5,
            "Write its SPDX id"),
    Hostile("override-short", hub(then="    licence_override: ok legal\n"), "too short to be a reason",
            "datasets[0].licence_override", 11, "10 characters or more"),
    Hostile("tier-unknown", hub("tier: minimal", "tier: balancd"), "'balancd' is not one of the catalog's tiers",
            "datasets[0].tier", 6, "Did you mean 'balanced'? Tiers: minimal, balanced."),
    Hostile("priority-quoted", hub("priority: 1", "priority: '1'"), "'1' is in quotes, which makes it text",
            "datasets[0].priority", 7, "without quotes, e.g. 'priority: 1'"),
    Hostile("priority-bool", hub("priority: 1", "priority: yes"), "YAML reads 'yes' as a boolean",
            "datasets[0].priority", 7, "Write a whole number above 0"),
    Hostile("priority-fraction", hub("priority: 1", "priority: 1.5"), "as a number with a fraction",
            "datasets[0].priority", 7, "Write a whole number"),
    Hostile("priority-zero", hub("priority: 1", "priority: 0"), "must be above 0, not 0", "datasets[0].priority", 7,
            "'priority: 1'"),
    Hostile("priority-negative", hub("priority: 1", "priority: -3"), "must be above 0, not -3",
            "datasets[0].priority", 7, "'priority: 1'"),
    Hostile("priority-octal", hub("priority: 1", "priority: 010"), "not a plain decimal number",
            "datasets[0].priority", 7, "'priority: 1'"),
    Hostile("priority-sexagesimal", hub("priority: 1", "priority: 1:30"), "not a plain decimal number",
            "datasets[0].priority", 7, "'priority: 1'"),
    Hostile("priority-null", hub("priority: 1", "priority: ~"), "reads '~' as empty (null)", "datasets[0].priority", 7,
            "'priority: 1'"),
    Hostile("priority-list", hub("priority: 1", "priority: [1]"), "not a list", "datasets[0].priority", 7,
            "'priority: 1'"),
    Hostile("size-gb-text", hub("size_gb: 2.5", "size_gb: 2.5 GB"), "'2.5 GB' is text", "datasets[0].size_gb", 8,
            "'size_gb: 2.5'"),
    Hostile("size-gb-infinite", hub("size_gb: 2.5", "size_gb: .inf"), "not a plain decimal number",
            "datasets[0].size_gb", 8, "'size_gb: 2.5'"),
    Hostile("size-gb-zero", hub("size_gb: 2.5", "size_gb: 0.0"), "must be above 0", "datasets[0].size_gb", 8,
            "Write a number above 0"),
    Hostile("size-gb-huge", hub("size_gb: 2.5", "size_gb: " + "9" * 5000), "more digits than a size_gb can need",
            "datasets[0].size_gb", 8, "'size_gb: 2.5'"),
    Hostile("data-unknown", hub("    source:", "    data: midi\n    source:"), "'midi' is not a kind of data",
            "datasets[0].data", 9, "Use 'audio' (rows become MP3 + JSON) or 'files'"),
    Hostile("data-null", hub("    source:", "    data:\n    source:"), "is empty (null)", "datasets[0].data", 9,
            "remove the line to use the default (audio)"),
    Hostile("column-for-files", url("    data: files", "    data: files\n    text_column: text"),
            "applies only to 'data: audio'", "datasets[0].text_column", 10, "set 'data: audio'"),
    Hostile("source-missing", hub("    source:\n      hf_id: org/speech\n", ""), "required field is missing",
            "datasets[0].source", 3, "Add 'source: ...' to the entry"),
    Hostile("source-scalar", hub("    source:\n      hf_id: org/speech", "    source: org/speech"),
            "must be a mapping with 'hf_id'", SRC, 9, "Indent the source's fields"),
    # a source's fields
    Hostile("source-unknown", url("sha256:", "sha265:"), "unknown field", f"{SRC}.sha265", 12,
            "Did you mean 'sha256'?"),
    Hostile("source-key-twice", hub(then="      hf_id: org/other\n"), "appears twice (first on line 10)",
            f"{SRC}.hf_id", 11, "Keep one of them"),
    Hostile("source-neither", hub("hf_id: org/speech", "split: train"), "exactly one of 'hf_id'", SRC, 10,
            "Add 'hf_id: org/name', or 'url: https://...'"),
    Hostile("source-both", hub(then="      url: https://example.org/x.zip\n"), "exactly one of 'hf_id'", SRC, 10,
            "Remove one of 'hf_id' and 'url'"),
    Hostile("hub-with-sha256", hub(then=f"      sha256: {SHA}\n"), "applies only to a URL source",
            f"{SRC}.sha256", 11, "pinned by 'revision'"),
    Hostile("url-with-revision", url(then="      revision: main\n"),
            "applies only to a Hub source", f"{SRC}.revision", 14, "pinned by its 'sha256'"),
    Hostile("hf-id-three-parts", hub("org/speech", "org/speech/x"), "exactly 'org/name'", f"{SRC}.hf_id", 10,
            "Write it as 'org/name'"),
    Hostile("hf-id-lookalike", hub("org/speech", "org/sp\u0435ech"), "non-ASCII", f"{SRC}.hf_id", 10,
            "Write it as 'org/name'"),
    Hostile("revision-dot-dot", hub(then="      revision: main..evil\n"), "is not a branch, tag or commit",
            f"{SRC}.revision", 11, "Use a branch ('main')"),
    Hostile("revision-float", hub(then="      revision: 1.10\n"), "reads '1.10' as a number", f"{SRC}.revision", 11,
            'Quote it: revision: "1.10"'),
    Hostile("revision-null", hub(then="      revision:\n"), "is empty (null)", f"{SRC}.revision", 11,
            "remove the line to use the default (main)"),
    Hostile("split-traversal", hub(then="      split: ../../etc\n"), "is not a split name", f"{SRC}.split", 11,
            "Split names are letters"),
    Hostile("subset-slash", hub(then="      subset: en/../x\n"), "is not a subset", f"{SRC}.subset", 11,
            "Use the config name"),
    Hostile("split-list", hub(then="      split: [train]\n"), "not a list", f"{SRC}.split", 11, "Write 'split: <text>'"),
    Hostile("url-ftp", url("https://example.org", "ftp://example.org"), "is not an http or https URL",
            f"{SRC}.url", 11, "Write the full address"),
    Hostile("url-no-host", url("https://example.org/midi.tar.gz", "https:///midi.tar.gz"), "has no host",
            f"{SRC}.url", 11, "Write the full address"),
    Hostile("url-credentials", url("https://example.org", "https://me:hunter2@example.org"),
            "credentials do not belong in the catalog", f"{SRC}.url", 11, "the catalog is committed to git"),
    Hostile("url-token-user", url("https://example.org", "https://ghp_token@example.org"),
            "credentials do not belong in the catalog", f"{SRC}.url", 11, "Remove the 'user:password@' part"),
    Hostile("url-space", url("midi.tar.gz", "my midi.tar.gz"), "contains spaces", f"{SRC}.url", 11, "%20"),
    Hostile("url-bad-port", url("example.org", "example.org:99999"), "is not a valid URL", f"{SRC}.url", 11,
            "Write the full address"),
    Hostile("sha256-missing", url(f"      sha256: {SHA}\n", ""), "needs the file's sha256", f"{SRC}.sha256", 11,
            "sha256sum FILE"),
    Hostile("sha256-upper", url(SHA, SHA.upper()), "is not a sha256 (64 lowercase hex digits)", f"{SRC}.sha256", 12,
            "sha256sum FILE"),
    Hostile("sha256-short", url(SHA, SHA[:40]), "is not a sha256", f"{SRC}.sha256", 12, "sha256sum FILE"),
    Hostile("size-missing", url("      size: 12345\n", ""), "needs the file's size in bytes", f"{SRC}.size", 11,
            "stat -c %s FILE"),
    Hostile("size-fraction", url("size: 12345", "size: 1.5"), "with a fraction", f"{SRC}.size", 13,
            "'size: 123456'"),
    Hostile("size-quoted", url("size: 12345", 'size: "12345"'), "in quotes", f"{SRC}.size", 13, "without quotes"),
    Hostile("archive-unknown", url(then="      archive: rar\n"),
            "'rar' is not an archive format", f"{SRC}.archive", 14, "Use one of: none, tar, tar.gz, tar.xz, tar.bz2, zip"),
    Hostile("directory-absolute", url(then="      directory: /etc\n"),
            "is not a relative path", f"{SRC}.directory", 14, "relative to the archive's top"),
    Hostile("directory-backslash", url(then="      directory: midi\\x\n"),
            "is not a relative path", f"{SRC}.directory", 14, "with '/'"),
    Hostile("directory-climbs", url(then="      directory: midi/../../x\n"),
            "leaves the archive ('..')", f"{SRC}.directory", 14, "relative to the archive's top"),
    Hostile("directory-whole", url(then="      directory: ./\n"),
            "names the whole archive", f"{SRC}.directory", 14, "Remove the line"),
    Hostile("directory-no-archive", url(then="      archive: none\n      directory: midi\n"),
            "applies only to an archive", f"{SRC}.directory", 15, "set 'archive' to tar, tar.gz, tar.xz"),
    # two entries for one dataset
    Hostile("same-hub-dataset", HEADER + HUB + HUB.replace("name: speech", "name: speech-again"),
            "the same Hub dataset as the entry 'speech' (line 3)", "datasets[1].source", SECOND + 7,
            "Keep one entry for it; another subset or split is another dataset"),
    Hostile("same-hub-dataset-other-case", HEADER + HUB + HUB.replace("name: speech", "name: b").replace(
        "org/speech", "Org/Speech"), "the same Hub dataset", "datasets[1].source", SECOND + 7, "Keep one entry"),
    Hostile("same-url", HEADER + URL + URL.replace("name: midi", "name: midi-again"),
            "the same URL as the entry 'midi' (line 3)", "datasets[1].source.url", 14 + 8, "Keep one entry for it"),
]


@pytest.mark.parametrize("case", HOSTILE, ids=[c.id for c in HOSTILE])
def test_a_bad_catalog_is_refused_naming_file_line_field_and_fix(case: Hostile) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(case.text, catalog_path=CATALOG_PATH)
    error = caught.value
    assert case.message in error.problem, str(error)
    assert case.fix in error.fix, str(error)
    assert (error.field, error.line) == (case.field, case.line), str(error)
    assert error.catalog_path == error.request_path == CATALOG_PATH
    where = f"{CATALOG_PATH}:{case.line}" if case.line is not None else str(CATALOG_PATH)
    what = f"{case.field}: {error.problem}" if case.field else error.problem
    assert str(error) == f"{where}: {what}. {error.fix}"


@pytest.mark.parametrize("address", [
    "ftp://me:hunter2@example.org/midi.tar.gz",     # refused for its scheme
    "https://me:hunter2@example.org:0/midi.tar.gz",  # refused for its port
    "https://me:hunter2@/midi.tar.gz",              # refused for its missing host
    "https://me:hunter2@example.org/a midi.tar.gz",  # refused for its space
])
def test_a_refused_url_never_echoes_its_credentials(address: str) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(url("https://example.org/midi.tar.gz", address), catalog_path=CATALOG_PATH)
    assert "hunter2" not in str(caught.value) and "me:" not in str(caught.value), str(caught.value)


def test_there_are_cases_for_every_kind_of_refusal() -> None:
    assert len({c.id for c in HOSTILE}) == len(HOSTILE) >= 80


def test_a_catalog_error_is_a_request_error_and_names_the_catalog_without_a_file() -> None:
    with pytest.raises(RequestError) as caught:
        parse_catalog(hub("priority: 1", "priority: 0"))
    assert isinstance(caught.value, CatalogError)
    assert str(caught.value).startswith("<catalog>:7: datasets[0].priority: must be above 0")


def test_the_same_hub_dataset_with_another_subset_or_revision_is_another_dataset() -> None:
    second = HUB.replace("name: speech", "name: speech-2").replace("org/speech\n", "org/speech\n      subset: b\n")
    third = HUB.replace("name: speech", "name: speech-3").replace("org/speech\n", "org/speech\n      revision: v2\n")
    catalog = parse_catalog(HEADER + HUB + second + third)
    assert [e.source for e in catalog.entries] == [HubRef("org/speech"), HubRef("org/speech", subset="b"),
                                                   HubRef("org/speech", revision="v2")]


@pytest.mark.parametrize(
    ("address", "archive"),
    [
        ("https://example.org/a.tar", ArchiveFormat.TAR),
        ("https://example.org/a.tar.gz", ArchiveFormat.TAR_GZ),
        ("https://example.org/A.TGZ", ArchiveFormat.TAR_GZ),
        ("https://example.org/a.tar.xz", ArchiveFormat.TAR_XZ),
        ("https://example.org/a.txz", ArchiveFormat.TAR_XZ),
        ("https://example.org/a.tar.bz2", ArchiveFormat.TAR_BZ2),
        ("https://example.org/a.zip?raw=1", ArchiveFormat.ZIP),
        ("https://example.org/get?file=a.zip", ArchiveFormat.NONE),
        ("https://example.org/a.parquet", ArchiveFormat.NONE),
        ("https://example.org/a.mid", ArchiveFormat.NONE),
    ],
)
def test_the_archive_format_is_inferred_from_the_url_path(address: str, archive: ArchiveFormat) -> None:
    source = parse_catalog(url("https://example.org/midi.tar.gz", address)).entries[0].source
    assert isinstance(source, UrlSource) and source.archive is archive


@pytest.mark.parametrize("name", ["speech.7z", "speech.tar.zst", "clips.flac.xz", "all.rar"])
def test_a_packing_no_reader_opens_is_refused_with_the_ones_that_are(name: str) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(url("https://example.org/midi.tar.gz", f"https://example.org/{name}"),
                      catalog_path=CATALOG_PATH)
    assert "is packed in a way hugflow does not unpack" in caught.value.problem
    assert "tar.xz" in caught.value.fix and caught.value.field is not None and caught.value.field.endswith(".url")
    kept = parse_catalog(url("https://example.org/midi.tar.gz", f"https://example.org/{name}",
                             then="      archive: none\n")).entries[0].source
    assert isinstance(kept, UrlSource) and kept.archive is ArchiveFormat.NONE, "kept as it is when asked"


def test_a_stated_archive_format_wins_over_the_suffix() -> None:
    text = url("midi.tar.gz", "download").replace("size: 12345\n", "size: 12345\n      archive: tar.gz\n")
    source = parse_catalog(text).entries[0].source
    assert isinstance(source, UrlSource) and source.archive is ArchiveFormat.TAR_GZ


def test_an_unreadable_file_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read the file") as caught:
        load_catalog(tmp_path / "missing.yaml")
    assert caught.value.catalog_path == tmp_path / "missing.yaml"


def test_a_fifo_or_a_folder_as_the_catalog_is_refused_without_waiting(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "catalog.yaml")  # nothing ever writes to it: a read would wait for ever
    with pytest.raises(CatalogError, match="is not a regular file"):
        load_catalog(tmp_path / "catalog.yaml")
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(CatalogError, match="is not a regular file"):
        load_catalog(tmp_path / "folder.yaml")


def test_an_oversize_file_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    big = tmp_path / "catalog.yaml"
    big.write_bytes((HEADER + HUB).encode() + b"#" * (20 * MAX_CATALOG_BYTES))
    with pytest.raises(CatalogError, match="larger than"):
        load_catalog(big)


def test_a_partial_copy_is_resumed_only_while_what_it_still_needs_fits_the_budget() -> None:
    """Issue: "total 0.02 GB of 0.00 GB; 2 to sync": partial copies were resumed whatever the budget."""
    from hugflow_ray.core.tiers import Candidate, Decision, Presence, plan_tier

    entries = parse_catalog(HEADER + HUB + HUB.replace("name: speech", "name: more").replace("org/speech", "org/more")
                            ).entries
    big, small = (Candidate(e, e.name, expected_bytes=10_000, disk_bytes=4_000, presence=Presence.PARTIAL)
                  for e in entries)
    plan = plan_tier([big, small], tier="minimal", budget_bytes=15_000, other_bytes=0)
    assert [p.decision for p in plan.entries] == [Decision.RESUME, Decision.OVER_BUDGET]
    assert "needs 0.00 GB more to finish" in plan.entries[1].reason and "what it holds is kept" in plan.entries[1].reason
    assert plan.total_bytes == 10_000 + 4_000 <= 15_000
    nothing = plan_tier([big, small], tier="minimal", budget_bytes=1, other_bytes=0)
    assert [p.decision for p in nothing.entries] == [Decision.OVER_BUDGET] * 2 and nothing.to_sync == []
    assert nothing.total_bytes == 8_000, "what the partial copies hold stays counted"


def test_an_entry_fits_the_budget_only_with_the_source_its_sync_holds_while_it_runs() -> None:
    """Issue 24: a sync holds its output and, while it runs, the source files downloaded and not yet converted."""
    from hugflow_ray.core.tiers import Candidate, Decision, Presence, plan_tier

    entries = parse_catalog(HEADER + HUB + HUB.replace("name: speech", "name: more").replace("org/speech", "org/more")
                            ).entries
    first, second = (Candidate(e, e.name, expected_bytes=4_000, disk_bytes=0, presence=Presence.ABSENT,
                               transient_bytes=3_000) for e in entries)
    plan = plan_tier([first, second], tier="minimal", budget_bytes=10_000, other_bytes=0)
    # the first needs 4,000 + 3,000 while it syncs, then holds 4,000; the second then needs 4,000 + 3,000 > 6,000
    assert [p.decision for p in plan.entries] == [Decision.BRING_IN, Decision.OVER_BUDGET]
    assert "of source while it syncs" in plan.entries[1].reason and plan.total_bytes == 4_000
    roomy = plan_tier([first, second], tier="minimal", budget_bytes=11_000, other_bytes=0)
    assert [p.decision for p in roomy.entries] == [Decision.BRING_IN] * 2 and roomy.total_bytes == 8_000


def test_the_source_a_sync_holds_at_its_peak_is_its_windows_largest_files_unless_kept() -> None:
    from hugflow_ray.core.plan import peak_source_bytes

    sizes: list[int | None] = [5, 9, 1, 7, 3]
    assert peak_source_bytes(sizes, window=2, keep=False) == 9 + 7
    assert peak_source_bytes(sizes, window=10, keep=False) == peak_source_bytes(sizes, window=2, keep=True) == 25
    assert peak_source_bytes([*sizes, None], window=2, keep=False) is None, "a size the Hub does not say"
