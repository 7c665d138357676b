"""Request specs: the YAML files under ``requests/add/`` and ``requests/remove/``, read strictly.

A request is data from a pull request, so the reader trusts nothing: one document, one flat mapping of
plain scalars, no anchors, aliases, merge keys or tags, no duplicate keys, no implicit YAML typing
(``revision: 1.10`` is a float and ``split: no`` is False: both are refused, never coerced), size caps,
and ASCII-only Hub ids. Every error names the file, line, field and the fix.

The catalog (:mod:`hugflow_ray.core.catalog`) is read by the same rules, so the underscored readers here
(``_check_events``, ``_mapping_fields``, ``_check_fields``, ``_scalar_text``, ``_check_selection``,
``_hf_id_problem``) take a ``fail`` callback that makes the error of the file being read.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

import yaml

from hugflow_ray.core.licences import override_problem
from hugflow_ray.errors import PlanError, RequestError

MAX_REQUEST_BYTES = 16 * 1024
MAX_DESCRIPTION_LENGTH = 2000
MAX_REASON_LENGTH = 2000
MAX_FIELD_LENGTH = 256
MAX_HF_ID_PART_LENGTH = 96
MAX_PATH_LENGTH = 4096
MAX_NESTING = 2  # the request's mapping, and a list or mapping as a value (refused with its own message)

DEFAULT_REVISION = "main"
DEFAULT_SPLIT = "train"
DEFAULT_AUDIO_COLUMN = "audio"
DEFAULT_TEXT_COLUMN = "text"

_DEFAULTS = {
    "revision": DEFAULT_REVISION, "split": DEFAULT_SPLIT, "subset": "none: a single-config dataset",
    "audio_column": DEFAULT_AUDIO_COLUMN, "text_column": DEFAULT_TEXT_COLUMN,
}
_STR_TAG = "tag:yaml.org,2002:str"
_NULL_TAG = "tag:yaml.org,2002:null"
_YAML_TYPE_NAMES = {
    "tag:yaml.org,2002:bool": "a boolean",
    "tag:yaml.org,2002:int": "a number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:timestamp": "a date",
    "tag:yaml.org,2002:null": "empty (null)",
}
# The Hub's rules (huggingface_hub's validate_repo_id), in ASCII: starts and ends with a letter, digit or '_'.
_HF_ID_PART = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?")
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/+-]*")
_SPLIT = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")
_SUBSET = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._+ -]*[A-Za-z0-9_+])?")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class RequestKind(StrEnum):
    """Whether a request adds a dataset or removes one."""

    ADD = "add"
    REMOVE = "remove"


@dataclass(frozen=True)
class HubRef:
    """A copy of a Hub dataset: the part of a request that names its dataset directory."""

    hf_id: str
    revision: str = DEFAULT_REVISION
    subset: str | None = None
    split: str = DEFAULT_SPLIT

    @property
    def source(self) -> str:
        """The dataset as a user would name it."""
        return self.hf_id


@dataclass(frozen=True)
class Origin:
    """Where a local dataset's files came from, when they were downloaded for it (a catalog URL source): the
    identity its copy is pinned to, as a Hub copy is to its commit."""

    url: str
    sha256: str
    licence: str | None = None


@dataclass(frozen=True)
class LocalRef:
    """A local dataset: a directory or parquet file in Hub layout (relative paths are resolved against the
    request file's directory). It has no revisions."""

    path: Path
    subset: str | None = None
    split: str = DEFAULT_SPLIT
    name: str | None = None  # a catalog entry's name, which names its copy (None: named after the path)
    origin: Origin | None = None  # where its files were downloaded from (None: the operator's own files)

    @property
    def source(self) -> str:
        """The dataset as a user would name it."""
        return str(self.path)


DatasetRef = HubRef | LocalRef


@dataclass(frozen=True)
class AddRequest:
    """A request to bring a dataset onto this machine."""

    dataset: DatasetRef
    description: str
    audio_column: str = DEFAULT_AUDIO_COLUMN
    text_column: str = DEFAULT_TEXT_COLUMN
    audio_column_explicit: bool = False
    text_column_explicit: bool = False
    request_path: Path | None = None
    licence_override: str | None = None  # why a dataset outside the licence policy is brought in anyway

    kind = RequestKind.ADD


@dataclass(frozen=True)
class RemoveRequest:
    """A request to delete a dataset copy from this machine."""

    dataset: DatasetRef
    reason: str
    request_path: Path | None = None

    kind = RequestKind.REMOVE


Request = AddRequest | RemoveRequest


@dataclass(frozen=True)
class _Field:
    required: bool = False
    max_length: int = MAX_FIELD_LENGTH
    multiline: bool = False
    text: bool = True  # False: a number, list or mapping, which the caller reads from its node


_DATASET_FIELDS = {
    "hf_id": _Field(max_length=2 * MAX_HF_ID_PART_LENGTH + 1),
    "path": _Field(max_length=MAX_PATH_LENGTH),
    "revision": _Field(),
    "subset": _Field(),
    "split": _Field(),
}
_SCHEMAS: dict[RequestKind, dict[str, _Field]] = {
    RequestKind.ADD: {
        **_DATASET_FIELDS,
        "description": _Field(required=True, max_length=MAX_DESCRIPTION_LENGTH, multiline=True),
        "audio_column": _Field(),
        "text_column": _Field(),
        "licence_override": _Field(max_length=MAX_REASON_LENGTH, multiline=True),
    },
    RequestKind.REMOVE: {
        **_DATASET_FIELDS,
        "reason": _Field(required=True, max_length=MAX_REASON_LENGTH, multiline=True),
    },
}


def load_request(path: Path | str, *, kind: RequestKind | None = None) -> Request:
    """Read and validate one request file.

    Args:
        path: the YAML file.
        kind: add or remove; by default taken from the parent directory (``add/`` or ``remove/``), else from
            the keys (a ``reason`` makes it a removal).

    Raises:
        RequestError: the file is unreadable or invalid; the message names the line, field and fix.
    """
    path = Path(path)
    data = _read_capped(path, MAX_REQUEST_BYTES, lambda problem, fix: RequestError(problem, fix=fix,
                                                                                   request_path=path))
    return parse_request(data, request_path=path, kind=kind)


def _read_capped(path: Path, limit: int, fail: Callable[[str, str], RequestError]) -> bytes:
    """The file's first ``limit + 1`` bytes (one more than allowed, so the parser can tell it is too long); a FIFO or
    a device is refused without waiting on it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise fail(f"cannot read the file ({e.strerror})", "Check the path.") from e
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise fail("is not a regular file (a FIFO, a device or a folder)", "Give the path of the file itself.")
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as f:
        try:
            return f.read(limit + 1)
        except OSError as e:
            raise fail(f"cannot read the file ({e.strerror})", "Check the path.") from e


def parse_request(data: bytes | str, *, request_path: Path | None = None, kind: RequestKind | None = None) -> Request:
    """Validate a request given as YAML text (see :func:`load_request`)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > MAX_REQUEST_BYTES:
        raise RequestError(
            f"the file is larger than {MAX_REQUEST_BYTES} bytes",
            fix="A request is a few lines; shorten the description.",
            request_path=request_path,
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError(
            f"the file is not UTF-8 text (bad byte at offset {e.start})",
            fix="Save it as UTF-8.",
            request_path=request_path,
        ) from e
    fail = _request_fail(request_path)
    mapping = _strict_mapping(text, fail)
    if kind is None:
        kind = _kind_from(request_path, mapping)
    values = _check_fields(mapping, _SCHEMAS[kind], fail)
    lines = {key: key_node.start_mark.line + 1 for key, (key_node, _) in mapping.items()}
    return _build(kind, values, lines, request_path)


def _kind_from(request_path: Path | None, mapping: dict[str, tuple[yaml.Node, yaml.Node]]) -> RequestKind:
    if request_path is not None:
        for part in reversed(request_path.parent.parts):
            if part in (RequestKind.ADD.value, RequestKind.REMOVE.value):
                return RequestKind(part)
    return RequestKind.REMOVE if "reason" in mapping else RequestKind.ADD


class _Fail(Protocol):
    def __call__(self, problem: str, fix: str, mark: yaml.Mark | None = None, field: str | None = None
                 ) -> RequestError: ...


def _request_fail(request_path: Path | None) -> _Fail:
    def fail(problem: str, fix: str, mark: yaml.Mark | None = None, field: str | None = None) -> RequestError:
        line = mark.line + 1 if mark is not None else None
        return RequestError(problem, fix=fix, request_path=request_path, line=line, field=field)

    return fail


def _strict_mapping(text: str, fail: _Fail) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    """Parse one YAML document holding a flat mapping; return key -> (key node, value node)."""
    _check_events(text, fail)
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if node is None:
        raise fail("the file is empty", "Write the request's fields, e.g. 'hf_id: org/name'.")
    if not isinstance(node, yaml.MappingNode):
        raise fail(
            "the file must hold a mapping of fields ('key: value' lines)",
            "Write one 'key: value' per line at the top level.",
            node.start_mark,
        )
    return _mapping_fields(node, fail)


def _mapping_fields(node: yaml.MappingNode, fail: _Fail) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    """A mapping's fields as key -> (key node, value node), refusing merge keys, keys that are not plain text and
    keys given twice."""
    mapping: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key_node, value_node in node.value:
        if key_node.value == "<<":
            raise fail("YAML merge keys (<<) are not allowed", "Write the fields out in full.", key_node.start_mark)
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR_TAG:
            raise fail(
                f"the key {key_node.value!r} is not a plain name",
                "Use the documented field names as keys.",
                key_node.start_mark,
            )
        key = key_node.value
        if key in mapping:
            first = mapping[key][0].start_mark.line + 1
            raise fail(f"the field appears twice (first on line {first})", "Keep one of them.", key_node.start_mark,
                       field=key)
        mapping[key] = (key_node, value_node)
    return mapping


def _check_events(
    text: str,
    fail: _Fail,
    *,
    max_nesting: int = MAX_NESTING,
    nesting_fix: str = "Write each field as one 'key: text' line.",
    documents_fix: str = "Put one request in each file (remove the extra '---').",
) -> None:
    """Refuse, on the parser's events and before any value is built: invalid YAML, nesting deeper than
    ``max_nesting`` (composing it would recurse without bound), several documents, aliases, anchors and tags."""
    try:
        events = list(yaml.parse(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise fail(f"the file is not valid YAML ({e.problem})", "Fix the YAML syntax at that line.", mark) from e
    except yaml.YAMLError as e:
        raise fail(f"the file is not valid YAML ({e})", "Fix the YAML syntax.") from e
    depth = 0
    for event in events:
        depth += isinstance(event, yaml.CollectionStartEvent) - isinstance(event, yaml.CollectionEndEvent)
        if depth > max_nesting:
            raise fail("a value nests lists or mappings inside each other", nesting_fix, event.start_mark)
    documents = [e for e in events if isinstance(e, yaml.DocumentStartEvent)]
    if len(documents) > 1:
        raise fail("the file holds several YAML documents", documents_fix, documents[1].start_mark)
    for event in events:
        if isinstance(event, yaml.AliasEvent):
            raise fail("YAML aliases (*name) are not allowed", "Write the value out in full.", event.start_mark)
        if getattr(event, "anchor", None) is not None:
            raise fail("YAML anchors (&name) are not allowed", "Remove the anchor.", event.start_mark)
        tag = getattr(event, "tag", None)
        implicit = getattr(event, "implicit", True)
        if tag is not None and not (implicit is True or (isinstance(implicit, tuple) and any(implicit))):
            raise fail(f"YAML tags ({tag}) are not allowed",
                       "Remove the tag; quote the value if you need it read as text.", event.start_mark)


def _check_fields(
    mapping: dict[str, tuple[yaml.Node, yaml.Node]],
    schema: dict[str, _Field],
    fail: _Fail,
    *,
    owner: str = "the request",
    mark: yaml.Mark | None = None,
    defaults: Mapping[str, str] = _DEFAULTS,
) -> dict[str, str]:
    """Refuse unknown fields (suggesting the closest known one) and missing required ones, and read the text
    fields; fields that are not text (``_Field.text``) are left to the caller, which reads them from their node.

    Args:
        owner: what holds the fields, for the fix of a missing one ("Add 'x: ...' to the request").
        mark: where ``owner`` starts, for the line of a missing field; None: no line.
        defaults: what an optional field means when it is left out, for the fix of a null one.
    """
    allowed = ", ".join(schema)
    values: dict[str, str] = {}
    for key, (key_node, value_node) in mapping.items():
        if key not in schema:
            close = difflib.get_close_matches(key, schema, n=1)
            hint = f"Did you mean '{close[0]}'? " if close else ""
            raise fail("unknown field", f"{hint}Allowed fields: {allowed}.", key_node.start_mark, key)
        if not schema[key].text:
            continue
        value = _scalar_text(key, value_node, schema[key], fail)
        if value is not None:
            values[key] = value
        elif not schema[key].required:
            default = defaults.get(key)
            raise fail(
                "is empty (null)",
                f"Give it a value, or remove the line to use the default ({default})." if default
                else "Give it a value, or remove the line.",
                key_node.start_mark,
                key,
            )
    for key, spec in schema.items():
        if spec.required and key not in (values if spec.text else mapping):
            raise fail(
                "this required field is missing" if key not in mapping else "this required field is empty",
                f"Add '{key}: ...' to {owner}.",
                mark,
                key,
            )
    return values


def _scalar_text(key: str, node: yaml.Node, spec: _Field, fail: _Fail) -> str | None:
    """The text of the field ``key``, or None when it is null; refuses lists, mappings, values YAML reads as
    another type (with a 'Quote it' fix), blank text, surrounding whitespace, control characters and overlong text."""

    def fail_here(problem: str, fix: str) -> RequestError:
        return fail(problem, fix, node.start_mark, key)

    if isinstance(node, yaml.SequenceNode):
        raise fail_here("must be a single text value, not a list", f"Write '{key}: <text>'.")
    if isinstance(node, yaml.MappingNode):
        raise fail_here("must be a single text value, not a mapping", f"Write '{key}: <text>'.")
    if node.tag == _NULL_TAG:
        return None
    if node.tag != _STR_TAG:
        raise fail_here(
            f"must be text, but YAML reads {node.value!r} as {_YAML_TYPE_NAMES.get(node.tag, node.tag)}",
            f"Quote it: {key}: \"{node.value}\"",
        )
    value: str = node.value.strip() if spec.multiline else node.value
    if not value.strip():
        raise fail_here("must not be empty", f"Give '{key}' a value or remove the line.")
    if value != value.strip():
        raise fail_here("has leading or trailing whitespace (a newline?)", "Remove the surrounding whitespace.")
    if _CONTROL.search(value) or (not spec.multiline and "\n" in value):
        raise fail_here("contains control characters or line breaks", "Remove them.")
    if len(value) > spec.max_length:
        raise fail_here(f"is longer than {spec.max_length} characters", "Shorten it.")
    return value


def _build(kind: RequestKind, values: dict[str, str], lines: dict[str, int], request_path: Path | None) -> Request:
    def fail(field: str | None, problem: str, fix: str) -> RequestError:
        return RequestError(problem, fix=fix, request_path=request_path, field=field, line=lines.get(field or ""))

    hf_id, path = values.get("hf_id"), values.get("path")
    if (hf_id is None) == (path is None):
        raise fail(
            "hf_id" if hf_id is None else None,
            "name the dataset with exactly one of 'hf_id' (a Hub repository) and 'path' (a local directory or file)",
            "Add 'hf_id: org/name'." if hf_id is None else "Remove one of 'hf_id' and 'path'.",
        )
    if hf_id is not None:
        check_hf_id(hf_id, request_path=request_path, line=lines.get("hf_id"))
    local_path: Path | None = None
    if path is not None:
        if "://" in path or path.startswith(("hf:", "s3:", "gs:")):
            raise fail("path", f"{path!r} is a URL, not a local path", "For the Hub, use 'hf_id: org/name'.")
        if "revision" in values:
            raise fail("revision", "a local 'path' has no revisions", "Remove 'revision' (it applies to hf_id).")
        local_path = Path(path).expanduser()
        if not local_path.is_absolute() and request_path is not None:
            local_path = request_path.parent / local_path
    revision, subset, split = _check_selection(values, fail)
    if problem := override_problem(values.get("licence_override")):
        raise fail("licence_override", *problem)
    dataset: DatasetRef
    if local_path is not None:
        dataset = LocalRef(local_path, subset=subset, split=split)
    else:
        assert hf_id is not None  # exactly one of hf_id and path, checked above
        dataset = HubRef(hf_id, revision=revision, subset=subset, split=split)
    if kind is RequestKind.REMOVE:
        return RemoveRequest(dataset=dataset, reason=values["reason"], request_path=request_path)
    return AddRequest(
        dataset=dataset,
        description=values["description"],
        audio_column=values.get("audio_column", DEFAULT_AUDIO_COLUMN),
        text_column=values.get("text_column", DEFAULT_TEXT_COLUMN),
        audio_column_explicit="audio_column" in values,
        text_column_explicit="text_column" in values,
        request_path=request_path,
        licence_override=values.get("licence_override"),
    )


def _check_selection(
    values: Mapping[str, str], fail: Callable[[str, str, str], RequestError]
) -> tuple[str, str | None, str]:
    """The ``revision``, ``subset`` and ``split`` of a Hub dataset (defaults filled in), checked.

    Args:
        values: the source's text fields.
        fail: makes the error for (field, problem, fix).
    """
    revision = values.get("revision", DEFAULT_REVISION)
    if not _REVISION.fullmatch(revision) or ".." in revision or revision.endswith(("/", ".lock")):
        raise fail(
            "revision",
            f"{revision!r} is not a branch, tag or commit name",
            "Use a branch ('main'), a tag ('v1.0') or a full commit sha.",
        )
    split = values.get("split", DEFAULT_SPLIT)
    if not _SPLIT.fullmatch(split):
        raise fail("split", f"{split!r} is not a split name", "Split names are letters, digits and '_' (e.g. 'train').")
    subset = values.get("subset")
    if subset is not None and not _SUBSET.fullmatch(subset):
        raise fail(
            "subset", f"{subset!r} is not a subset (config) name", "Use the config name as the dataset card lists it."
        )
    return revision, subset, split


_HF_ID_FIX = "Write it as 'org/name' with ASCII letters, digits, '-', '_' and '.' (as in the Hub URL)."


def _hf_id_problem(hf_id: str) -> str | None:
    """What is wrong with ``hf_id`` as a Hub repository id (exactly ``org/name`` in the Hub's ASCII charset), or
    None when nothing is; :data:`_HF_ID_FIX` says how to write it."""
    if "://" in hf_id or hf_id.startswith(("datasets/", "hf:")):
        return f"{hf_id!r} is a URL or path, not a repository id"
    parts = hf_id.split("/")
    if len(parts) != 2:
        return f"{hf_id!r} must be exactly 'org/name' (one '/')"
    if not hf_id.isascii():
        return f"{hf_id!r} contains non-ASCII characters (look-alike letters?)"
    for part in parts:
        if len(part) > MAX_HF_ID_PART_LENGTH:
            return f"{part[:20]!r}... is longer than {MAX_HF_ID_PART_LENGTH} characters"
        if not _HF_ID_PART.fullmatch(part):
            return f"{part!r} has characters the Hub does not allow, or starts/ends with '-' or '.'"
        if "--" in part or ".." in part:
            return f"{part!r} contains '--' or '..', which the Hub forbids"
    if hf_id.endswith(".git"):
        return f"{hf_id!r} ends with '.git', which the Hub forbids"
    return None


def check_hf_id(hf_id: str, *, request_path: Path | None = None, line: int | None = None) -> str:
    """Check that ``hf_id`` is exactly ``org/name`` in the Hub's ASCII charset.

    Raises:
        RequestError: it is not; the message says what is wrong.
    """
    problem = _hf_id_problem(hf_id)
    if problem is not None:
        raise RequestError(problem, fix=_HF_ID_FIX, request_path=request_path, line=line, field="hf_id")
    return hf_id


def request_fields(kind: RequestKind) -> list[str]:
    """The field names a request of ``kind`` accepts, in schema order."""
    return list(_SCHEMAS[kind])


def request_of_kind(source: Path | Request, kind: type[AddRequest] | type[RemoveRequest]) -> Request:
    """``source`` (a request file, or an already parsed request) as a request of ``kind``.

    Raises:
        RequestError: the file is invalid. PlanError: it is a request of the other kind.
    """
    request = load_request(source) if isinstance(source, Path) else source
    if not isinstance(request, kind):
        raise PlanError(f"{getattr(request, 'request_path', None) or source}: expected a {kind.__name__}")
    return request
