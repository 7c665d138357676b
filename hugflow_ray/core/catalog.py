"""The curated catalog: a YAML file in the repository (``catalog.yaml``) listing datasets with their source,
licence, expected size, tier and priority, read as strictly as a request.

A catalog looks like::

    tiers: [minimal, balanced, comprehensive]   # cumulative, smallest first
    datasets:
      - name: speech-small                      # the entry's name (and a URL source's directory name)
        description: Read speech for the TTS baseline.
        licence: CC-BY-4.0                      # an SPDX id (spelt 'licence'; the licence policy judges it)
        licence_override: ...                   # optional: why an entry the policy refuses is brought in anyway
        tier: minimal                           # one of the tiers
        priority: 1                             # a whole number; 1 comes first
        size_gb: 2.6                            # expected size on disk, for the budget
        data: audio                             # audio (default): MP3 + JSON as a request; files: kept as they are
        text_column: transcript                 # optional, audio only, as in a request (so is audio_column)
        source:
          hf_id: org/speech                     # a Hub source has a request's fields...
          revision: main                        # (revision, subset and split optional, as in a request)
      - name: midi
        ...
        source:
          url: https://example.org/midi.tar.gz  # ...a URL source: http(s), no credentials in it
          sha256: 3f0c...                       # required: 64 lowercase hex digits
          size: 12345                           # required: bytes
          archive: tar.gz                       # tar, tar.gz, zip or none; by default from the URL's suffix
          directory: midi                       # optional: the part of the archive to read, relative

Entry names are unique, and so are sources: two entries for one Hub dataset (``hf_id``, revision, subset and
split) or one URL are refused.

The records here are pure; :func:`load_catalog` and :func:`parse_catalog` read the YAML by the request's strict
rules (one document; no anchors, aliases, merge keys or tags; no key twice; text fields must be text, and
``priority``, ``size_gb`` and ``size`` plain unquoted decimal numbers). Every error is a
:class:`~hugflow_ray.errors.CatalogError` naming the file, line, field and fix; a field is named by its path from the
top, with 0-based list indices: ``datasets[2].source.sha256``, ``tiers[1]``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import yaml

from hugflow_ray.core.licences import LICENCE_ID, override_problem
from hugflow_ray.core.request import (
    _DEFAULTS,
    _HF_ID_FIX,
    _STR_TAG,
    _YAML_TYPE_NAMES,
    DEFAULT_AUDIO_COLUMN,
    DEFAULT_TEXT_COLUMN,
    MAX_DESCRIPTION_LENGTH,
    MAX_REASON_LENGTH,
    HubRef,
    _check_events,
    _check_fields,
    _check_selection,
    _Field,
    _hf_id_problem,
    _mapping_fields,
    _read_capped,
)
from hugflow_ray.errors import CatalogError
from hugflow_ray.utils.redact import redact

GB = 1000**3  # sizes in the catalog and MAX_STORAGE_GB are decimal gigabytes, as the Hub and disk vendors count

MAX_CATALOG_BYTES = 256 * 1024
# top mapping -> datasets list -> entry -> source, and one more so a list or mapping given for a single value is
# refused with its own message
MAX_CATALOG_NESTING = 5
MAX_URL_LENGTH = 2048
MAX_NUMBER_DIGITS = 18  # more than any size in bytes needs; int() refuses past 4300 digits


class DataKind(StrEnum):
    """What a sync does with an entry's data."""

    AUDIO = "audio"  # every row -> MP3 + JSON, as a request
    FILES = "files"  # the files kept as they are (MIDI, scores, text): copied, checksummed, verified


class ArchiveFormat(StrEnum):
    """How a URL source is packed."""

    NONE = "none"  # a single file (a parquet file, a MIDI file...)
    TAR = "tar"
    TAR_GZ = "tar.gz"
    TAR_XZ = "tar.xz"
    TAR_BZ2 = "tar.bz2"
    ZIP = "zip"


@dataclass(frozen=True)
class UrlSource:
    """A dataset downloaded from a plain URL, verified against its size and sha256 before anything reads it.

    Attributes:
        url: http(s) URL.
        sha256: the file's checksum, 64 lowercase hex digits.
        size: the file's size in bytes.
        archive: how the file is packed.
        directory: the directory inside the (extracted) archive to read, relative; None: all of it.
    """

    url: str
    sha256: str
    size: int
    archive: ArchiveFormat = ArchiveFormat.NONE
    directory: str | None = None

    @property
    def source(self) -> str:
        """The source as a user would name it."""
        return self.url


CatalogSource = HubRef | UrlSource


@dataclass(frozen=True)
class CatalogEntry:
    """One dataset of the catalog.

    Attributes:
        name: unique in the catalog; lowercase letters, digits, '-' and '_'.
        licence: an SPDX licence id as written in the catalog.
        licence_override: the recorded reason an entry outside the licence policy is brought in anyway.
        size_bytes: the expected size on disk (``size_gb`` in the file), for the budget.
        tier: the smallest tier that includes the entry (tiers are cumulative).
        priority: 1 comes first; entries of equal priority keep their order in the file.
        data: audio (MP3 + JSON) or files kept as they are.
        line: the entry's line in the catalog file, for messages.
    """

    name: str
    description: str
    source: CatalogSource
    licence: str
    size_bytes: int
    tier: str
    priority: int
    data: DataKind = DataKind.AUDIO
    licence_override: str | None = None
    audio_column: str = DEFAULT_AUDIO_COLUMN
    text_column: str = DEFAULT_TEXT_COLUMN
    audio_column_explicit: bool = False
    text_column_explicit: bool = False
    line: int | None = None


@dataclass(frozen=True)
class Catalog:
    """A catalog file: its tiers (smallest first, each including the ones before it) and its entries in file
    order."""

    tiers: tuple[str, ...]
    entries: tuple[CatalogEntry, ...]
    path: Path | None = None

    def tier_entries(self, tier: str) -> list[CatalogEntry]:
        """The entries a tier brings in (its own and every smaller tier's), highest priority first.

        Raises:
            KeyError: no such tier.
        """
        rank = self.tiers.index(tier) if tier in self.tiers else None
        if rank is None:
            raise KeyError(tier)
        included = set(self.tiers[: rank + 1])
        chosen = [(e.priority, i, e) for i, e in enumerate(self.entries) if e.tier in included]
        return [e for _, _, e in sorted(chosen, key=lambda t: (t[0], t[1]))]

    def named_entries(self, names: Iterable[str]) -> list[CatalogEntry]:
        """The entries named (each once), highest priority first as in a tier.

        Raises:
            KeyError: a name the catalog does not list (the first one).
        """
        by_name = {e.name: (e.priority, i, e) for i, e in enumerate(self.entries)}
        wanted = dict.fromkeys(names)
        if unknown := [n for n in wanted if n not in by_name]:
            raise KeyError(unknown[0])
        return [e for _, _, e in sorted((by_name[n] for n in wanted), key=lambda t: (t[0], t[1]))]

    def entry(self, name: str) -> CatalogEntry | None:
        """The entry called ``name``, or None."""
        return next((e for e in self.entries if e.name == name), None)


_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_TIER = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_WHOLE = re.compile(r"0|[1-9][0-9]*")
_DECIMAL = re.compile(r"(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"

_TOP_FIELDS = {"tiers": _Field(required=True, text=False), "datasets": _Field(required=True, text=False)}
_ENTRY_FIELDS = {
    "name": _Field(required=True),
    "description": _Field(required=True, max_length=MAX_DESCRIPTION_LENGTH, multiline=True),
    "licence": _Field(required=True),
    "licence_override": _Field(max_length=MAX_REASON_LENGTH, multiline=True),
    "tier": _Field(required=True),
    "priority": _Field(required=True, text=False),
    "size_gb": _Field(required=True, text=False),
    "data": _Field(),
    "audio_column": _Field(),
    "text_column": _Field(),
    "source": _Field(required=True, text=False),
}
_HUB_ONLY = ("hf_id", "revision", "subset", "split")
_URL_ONLY = ("url", "sha256", "size", "archive", "directory")
_SOURCE_FIELDS = {
    "hf_id": _Field(),
    "revision": _Field(),
    "subset": _Field(),
    "split": _Field(),
    "url": _Field(max_length=MAX_URL_LENGTH),
    "sha256": _Field(),
    "size": _Field(text=False),
    "archive": _Field(),
    "directory": _Field(),
}
_ENTRY_DEFAULTS = {"data": DataKind.AUDIO.value, "audio_column": DEFAULT_AUDIO_COLUMN,
                   "text_column": DEFAULT_TEXT_COLUMN}
_SOURCE_DEFAULTS = {**_DEFAULTS, "archive": "inferred from the URL", "directory": "all of the archive"}
_ARCHIVE_SUFFIXES = ((".tar.gz", ArchiveFormat.TAR_GZ), (".tgz", ArchiveFormat.TAR_GZ), (".tar", ArchiveFormat.TAR),
                     (".tar.xz", ArchiveFormat.TAR_XZ), (".txz", ArchiveFormat.TAR_XZ),
                     (".tar.bz2", ArchiveFormat.TAR_BZ2), (".tbz2", ArchiveFormat.TAR_BZ2), (".zip", ArchiveFormat.ZIP))
# Packings no reader here opens: a single file so packed would be kept, or read, as the packed bytes.
_UNREAD_SUFFIXES = (".7z", ".rar", ".xz", ".bz2", ".gz", ".zst", ".lz4", ".lzma", ".z")

_FieldFail = Callable[[str, str], CatalogError]  # (problem, fix) about one field


def load_catalog(path: Path | str) -> Catalog:
    """Read and validate a catalog file.

    Raises:
        CatalogError: the file is unreadable or invalid; the message names the line, field and fix.
    """
    path = Path(path)
    data = _read_capped(path, MAX_CATALOG_BYTES, lambda problem, fix: CatalogError(problem, fix=fix,
                                                                                   catalog_path=path))
    return parse_catalog(data, catalog_path=path)


def parse_catalog(data: bytes | str, *, catalog_path: Path | None = None) -> Catalog:
    """Validate a catalog given as YAML text (see :func:`load_catalog`).

    Raises:
        CatalogError: the catalog is invalid.
    """
    at = _At(catalog_path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > MAX_CATALOG_BYTES:
        raise at(f"the file is larger than {MAX_CATALOG_BYTES} bytes",
                 "A catalog holds a few lines per dataset; shorten the descriptions.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise at(f"the file is not UTF-8 text (bad byte at offset {e.start})", "Save it as UTF-8.") from e
    _check_events(
        text,
        at,
        max_nesting=MAX_CATALOG_NESTING,
        nesting_fix="Nest no deeper than datasets, entry, source; write each field as one 'key: value' line.",
        documents_fix="Keep one catalog in the file (remove the extra '---').",
    )
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if node is None:
        raise at("the file is empty", "Write 'tiers: [...]' and 'datasets:' with an entry per dataset.")
    if not isinstance(node, yaml.MappingNode):
        raise at("the file must hold a mapping with 'tiers' and 'datasets'",
                 "Write 'tiers:' and 'datasets:' at the top level.", node.start_mark)
    fields = _mapping_fields(node, at)
    _check_fields(fields, _TOP_FIELDS, at, owner="the catalog")
    tiers = _tiers(fields["tiers"][1], at.child("tiers"))
    datasets, where = fields["datasets"][1], at.child("datasets")
    if not isinstance(datasets, yaml.SequenceNode) or not datasets.value:
        raise where("must be a list of at least one dataset",
                    "Write each dataset as an item under 'datasets:', starting '- name: ...'.", datasets.start_mark)
    entries: list[CatalogEntry] = []
    for i, entry_node in enumerate(datasets.value):
        entries.append(_entry(entry_node, where.item(i), tiers, entries))
    return Catalog(tiers=tiers, entries=tuple(entries), path=catalog_path)


@dataclass(frozen=True)
class _At:
    """Where a value sits in the catalog (the file and the field path): makes the errors about it, as the request
    readers' ``fail`` callbacks do."""

    catalog_path: Path | None
    field: str | None = None

    def __call__(self, problem: str, fix: str, mark: yaml.Mark | None = None, field: str | None = None
                 ) -> CatalogError:
        line = mark.line + 1 if mark is not None else None
        return CatalogError(problem, fix=fix, catalog_path=self.catalog_path, line=line, field=self._join(field))

    def child(self, key: str) -> _At:
        return _At(self.catalog_path, self._join(key))

    def item(self, index: int) -> _At:
        return _At(self.catalog_path, f"{self.field}[{index}]")

    def _join(self, key: str | None) -> str | None:
        if key is None:
            return self.field
        return f"{self.field}.{key}" if self.field else key


def _tiers(node: yaml.Node, at: _At) -> tuple[str, ...]:
    fix = "Write the tiers smallest first, e.g. 'tiers: [minimal, balanced, comprehensive]'."
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        raise at("must be a list of at least one tier name", fix, node.start_mark)
    tiers: list[str] = []
    for i, item in enumerate(node.value):
        if not (isinstance(item, yaml.ScalarNode) and item.tag == _STR_TAG and _TIER.fullmatch(item.value)):
            shown = repr(item.value) if isinstance(item, yaml.ScalarNode) else "a list or mapping"
            raise at.item(i)(f"{shown} is not a tier name",
                             "Name tiers with lowercase letters, digits, '-' and '_', starting with a letter.",
                             item.start_mark)
        if item.value in tiers:
            raise at.item(i)(f"the tier is listed twice (first as tiers[{tiers.index(item.value)}])",
                             "List each tier once.", item.start_mark)
        tiers.append(item.value)
    return tuple(tiers)


_FieldFail = Callable[[str, str, str], CatalogError]


def _mapping_values(node: yaml.Node, at: _At, schema: dict[str, _Field], defaults: dict[str, str], *, owner: str,
                    not_a_mapping: tuple[str, str]
                    ) -> tuple[dict[str, tuple[yaml.Node, yaml.Node]], dict[str, str], _FieldFail]:
    """A mapping's fields checked against ``schema``: its nodes, its text values, and the error for one field."""
    if not isinstance(node, yaml.MappingNode):
        raise at(*not_a_mapping, node.start_mark)
    fields = _mapping_fields(node, at)
    values = _check_fields(fields, schema, at, owner=owner, mark=node.start_mark, defaults=defaults)

    def fail(field: str, problem: str, fix: str) -> CatalogError:
        return at(problem, fix, fields[field][0].start_mark if field in fields else node.start_mark, field)

    return fields, values, fail


def _entry(node: yaml.Node, at: _At, tiers: tuple[str, ...], earlier: list[CatalogEntry]) -> CatalogEntry:
    """One dataset entry, checked on its own and against the ``earlier`` ones (names and sources are unique)."""
    fields, values, fail = _mapping_values(
        node, at, _ENTRY_FIELDS, _ENTRY_DEFAULTS, owner="the entry",
        not_a_mapping=("each dataset must be a mapping of fields",
                       "Write the entry as '- name: ...' with its other fields indented below it."))

    name = values["name"]
    if not _NAME.fullmatch(name):
        raise fail("name", f"{name!r} is not an entry name",
                   "Use lowercase letters, digits, '-' and '_' (64 at most), starting with a letter or digit.")
    for other in earlier:
        if other.name == name:
            raise fail("name", f"the name is taken by an earlier entry (line {other.line})",
                       "Give each entry its own name.")
    licence = values["licence"]
    if not LICENCE_ID.fullmatch(licence):
        raise fail("licence", f"{licence!r} is not a licence id",
                   "Write its SPDX id, e.g. 'CC-BY-4.0' (the list: https://spdx.org/licenses/).")
    if problem := override_problem(values.get("licence_override")):
        raise fail("licence_override", *problem)
    tier = values["tier"]
    if tier not in tiers:
        close = difflib.get_close_matches(tier, tiers, n=1)
        hint = f"Did you mean '{close[0]}'? " if close else ""
        raise fail("tier", f"{tier!r} is not one of the catalog's tiers", f"{hint}Tiers: {', '.join(tiers)}.")
    priority = _number("priority", fields["priority"][1], at, whole=True, example="1")
    size_gb = _number("size_gb", fields["size_gb"][1], at, whole=False, example="2.5")
    data_value = values.get("data", DataKind.AUDIO.value)
    if data_value not in {kind.value for kind in DataKind}:
        raise fail("data", f"{data_value!r} is not a kind of data",
                   "Use 'audio' (rows become MP3 + JSON) or 'files' (files kept as they are).")
    data = DataKind(data_value)
    for column in ("audio_column", "text_column"):
        if column in values and data is not DataKind.AUDIO:
            raise fail(column, "applies only to 'data: audio'", "Remove it, or set 'data: audio'.")
    source = _source(fields["source"][1], at.child("source"), earlier)
    return CatalogEntry(
        name=name,
        description=values["description"],
        source=source,
        licence=licence,
        size_bytes=round(size_gb * GB),
        tier=tier,
        priority=int(priority),
        data=data,
        licence_override=values.get("licence_override"),
        audio_column=values.get("audio_column", DEFAULT_AUDIO_COLUMN),
        text_column=values.get("text_column", DEFAULT_TEXT_COLUMN),
        audio_column_explicit="audio_column" in values,
        text_column_explicit="text_column" in values,
        line=node.start_mark.line + 1,
    )


def _source(node: yaml.Node, at: _At, earlier: list[CatalogEntry]) -> CatalogSource:
    """An entry's source: a Hub dataset (a request's fields) or a URL with its checksum and size."""
    fields, values, fail = _mapping_values(
        node, at, _SOURCE_FIELDS, _SOURCE_DEFAULTS, owner="the source",
        not_a_mapping=("must be a mapping with 'hf_id' (a Hub dataset) or 'url'",
                       "Indent the source's fields below 'source:', e.g. 'hf_id: org/name'."))

    hf_id, url = values.get("hf_id"), values.get("url")
    if (hf_id is None) == (url is None):
        raise at("name the source with exactly one of 'hf_id' (a Hub dataset) and 'url'",
                 "Add 'hf_id: org/name', or 'url: https://...' with its 'sha256' and 'size'." if hf_id is None
                 else "Remove one of 'hf_id' and 'url'.", node.start_mark)
    if hf_id is not None:
        for field in _URL_ONLY:
            if field in fields:
                raise fail(field, "applies only to a URL source", "Remove it: a Hub source is pinned by 'revision'.")
        problem = _hf_id_problem(hf_id)
        if problem is not None:
            raise fail("hf_id", problem, _HF_ID_FIX)
        revision, subset, split = _check_selection(values, fail)
        hub = HubRef(hf_id, revision=revision, subset=subset, split=split)
        same = _key(hub)
        for other in earlier:
            if isinstance(other.source, HubRef) and _key(other.source) == same:
                raise at(f"the same Hub dataset as the entry '{other.name}' (line {other.line})",
                         "Keep one entry for it; another subset or split is another dataset.", node.start_mark)
        return hub
    assert url is not None  # exactly one of hf_id and url, checked above
    for field in _HUB_ONLY:
        if field in fields:
            raise fail(field, "applies only to a Hub source", "Remove it: a URL source is pinned by its 'sha256'.")
    _check_url(url, lambda problem, fix: fail("url", problem, fix))
    for other in earlier:
        if isinstance(other.source, UrlSource) and other.source.url == url:
            raise fail("url", f"the same URL as the entry '{other.name}' (line {other.line})",
                       "Keep one entry for it.")
    sha256 = values.get("sha256")
    if sha256 is None or not _SHA256.fullmatch(sha256):
        raise fail("sha256", "a URL source needs the file's sha256, as 64 lowercase hex digits" if sha256 is None
                   else f"{sha256!r} is not a sha256 (64 lowercase hex digits)",
                   "Add 'sha256: ...' with the output of 'sha256sum FILE', so the download is verified.")
    if "size" not in fields:
        raise fail("size", "a URL source needs the file's size in bytes",
                   "Add 'size: ...' with the output of 'stat -c %s FILE'.")
    size = int(_number("size", fields["size"][1], at, whole=True, example="123456"))
    archive = _archive_of(url)
    if "archive" in values:
        if values["archive"] not in {a.value for a in ArchiveFormat}:
            raise fail("archive", f"{values['archive']!r} is not an archive format",
                       f"Use one of: {', '.join(a.value for a in ArchiveFormat)}.")
        archive = ArchiveFormat(values["archive"])
    if "archive" not in values and archive is ArchiveFormat.NONE and urlsplit(url).path.lower().endswith(
            _UNREAD_SUFFIXES):
        raise fail("url", f"{PurePosixPath(urlsplit(url).path).name!r} is packed in a way hugflow does not unpack",
                   f"Repack it as one of: {', '.join(a.value for a in ArchiveFormat if a is not ArchiveFormat.NONE)} "
                   "(or give the unpacked file's URL); to keep the file as it is (data: files), set 'archive: none'.")
    directory = values.get("directory")
    if directory is not None:
        directory = _check_directory(directory, archive, lambda problem, fix: fail("directory", problem, fix))
    return UrlSource(url=url, sha256=sha256, size=size, archive=archive, directory=directory)


def _key(hub: HubRef) -> tuple[str, str, str | None, str]:
    """What makes two Hub sources the same dataset (the Hub's ids are case-insensitive)."""
    return hub.hf_id.lower(), hub.revision, hub.subset, hub.split


def _number(key: str, node: yaml.Node, at: _At, *, whole: bool, example: str) -> int | float:
    """A positive number written as an unquoted plain decimal: YAML reads ``010`` as 8 and ``1:30`` as 90, so
    nothing else is taken."""
    kind = "a whole number" if whole else "a number"
    fix = f"Write {kind} above 0 without quotes, e.g. '{key}: {example}'."

    def fail(problem: str) -> CatalogError:
        return at(problem, fix, node.start_mark, key)

    if isinstance(node, yaml.SequenceNode):
        raise fail(f"must be {kind}, not a list")
    if isinstance(node, yaml.MappingNode):
        raise fail(f"must be {kind}, not a mapping")
    value: str = node.value
    if node.tag == _STR_TAG:
        quoted = isinstance(node, yaml.ScalarNode) and node.style in ("'", '"')
        raise fail(f"must be {kind}, but {value!r} is " + ("in quotes, which makes it text" if quoted else "text"))
    if node.tag not in (_INT_TAG, _FLOAT_TAG) or (whole and node.tag == _FLOAT_TAG):
        raise fail(f"must be {kind}, but YAML reads {value!r} as {_YAML_TYPE_NAMES.get(node.tag, node.tag)}"
                   + (" with a fraction" if node.tag == _FLOAT_TAG else ""))
    if value.startswith("-"):
        raise fail(f"must be above 0, not {value}")
    if not (_WHOLE if whole else _DECIMAL).fullmatch(value):
        raise fail(f"{value!r} is not a plain decimal number"
                   + (" (YAML reads '010' as 8 and '1:30' as 90)" if node.tag == _INT_TAG else ""))
    if len(value) > MAX_NUMBER_DIGITS:
        raise fail(f"{value[:MAX_NUMBER_DIGITS]}... has more digits than a {key} can need")
    number = int(value) if whole else float(value)
    if number <= 0:
        raise fail(f"must be above 0, not {value}")
    return number


def _check_url(url: str, fail: _FieldFail) -> None:
    shown = repr(redact(url))  # a message never repeats the user-info the check refuses
    if not url.isascii() or any(c.isspace() for c in url):
        raise fail("contains spaces or non-ASCII characters", "Percent-encode them (a space is %20).")
    try:
        parts = urlsplit(url)
        if parts.port == 0:  # reading the port checks it, and refuses one past 65535
            raise ValueError("port 0")
    except ValueError as e:
        raise fail(f"{shown} is not a valid URL ({redact(str(e))})",
                   "Write the full address, e.g. 'https://example.org/x.zip'.") from None
    if parts.scheme not in ("http", "https"):
        raise fail(f"{shown} is not an http or https URL",
                   "Write the full address, e.g. 'https://example.org/x.zip'.")
    if "@" in parts.netloc:
        raise fail("credentials do not belong in the catalog",
                   "Remove the 'user:password@' part: the catalog is committed to git, where everyone can read it.")
    if not parts.hostname:
        raise fail(f"{shown} has no host", "Write the full address, e.g. 'https://example.org/x.zip'.")


def _archive_of(url: str) -> ArchiveFormat:
    """The archive format a URL's path suffix says; none when it says none."""
    path = urlsplit(url).path.lower()
    return next((archive for suffix, archive in _ARCHIVE_SUFFIXES if path.endswith(suffix)), ArchiveFormat.NONE)


def _check_directory(directory: str, archive: ArchiveFormat, fail: _FieldFail) -> str:
    """``directory`` as a clean relative POSIX path inside the archive."""
    fix = "Write it relative to the archive's top, with '/' (e.g. 'midi/train')."
    if archive is ArchiveFormat.NONE:
        raise fail("applies only to an archive", "Remove it, or set 'archive' to tar, tar.gz, tar.xz, tar.bz2 or zip.")
    if "\\" in directory or directory.startswith("/") or re.match(r"[A-Za-z]:", directory):
        raise fail(f"{directory!r} is not a relative path", fix)
    path = PurePosixPath(directory)
    if ".." in path.parts:
        raise fail(f"{directory!r} leaves the archive ('..')", fix)
    if path.as_posix() == ".":
        raise fail(f"{directory!r} names the whole archive", "Remove the line: the whole archive is read by default.")
    return path.as_posix()
