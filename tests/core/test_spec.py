"""Request specs: valid requests are read; hostile or malformed ones are refused with file, line, field and fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from hugflow_ray.core.request import (
    MAX_REQUEST_BYTES,
    AddRequest,
    LocalRef,
    RemoveRequest,
    RequestKind,
    load_request,
    parse_request,
    request_fields,
)
from hugflow_ray.errors import RequestError

OK = "hf_id: org/name\ndescription: Speech for tests\n"


@dataclass(frozen=True)
class Hostile:
    id: str
    text: str | bytes
    message: str
    field: str | None = None
    line: int | None = None
    kind: RequestKind = RequestKind.ADD


HOSTILE = [
    Hostile("unknown-key", OK + "hf-id: a/b\n", "Did you mean 'hf_id'?", "hf-id", 3),
    Hostile("unknown-key-lists-allowed", OK + "colour: red\n", "Allowed fields: hf_id, path, revision", "colour", 3),
    Hostile("missing-hf-id", "description: x\n", "exactly one of 'hf_id'", "hf_id"),
    Hostile("missing-description", "hf_id: org/name\n", "required field is missing", "description"),
    Hostile("empty-description", "hf_id: org/name\ndescription:\n", "required field is empty", "description"),
    Hostile("blank-description", "hf_id: org/name\ndescription: '  '\n", "must not be empty", "description", 2),
    Hostile("both-hf-id-and-path", OK + "path: ./data\n", "Remove one of 'hf_id' and 'path'"),
    Hostile("revision-float", OK + "revision: 1.10\n", "reads '1.10' as a number", "revision", 3),
    Hostile("revision-int", OK + "revision: 2\n", 'Quote it: revision: "2"', "revision", 3),
    Hostile("split-no-is-bool", OK + "split: no\n", "reads 'no' as a boolean", "split", 3),
    Hostile("subset-on-is-bool", OK + "subset: on\n", "as a boolean", "subset", 3),
    Hostile("revision-date", OK + "revision: 2024-01-01\n", "as a date", "revision", 3),
    Hostile("description-list", "hf_id: org/name\ndescription: [a, b]\n", "not a list", "description", 2),
    Hostile("description-mapping", "hf_id: org/name\ndescription: {a: b}\n", "not a mapping", "description", 2),
    Hostile("duplicate-key", OK + "hf_id: other/name\n", "appears twice (first on line 1)", "hf_id", 3),
    Hostile("anchor-and-alias", "hf_id: &x org/name\ndescription: *x\n", "anchors (&name) are not allowed", None, 1),
    Hostile("alias-only", "hf_id: org/name\ndescription: *x\n", "aliases (*name) are not allowed", None, 2),
    Hostile("merge-key", "<<: {hf_id: org/name}\ndescription: x\n", "merge keys (<<) are not allowed", None, 1),
    Hostile("python-tag", "hf_id: !!python/object/apply:os.system ['id']\ndescription: x\n", "tags", None, 1),
    Hostile("python-name-tag", "hf_id: org/name\ndescription: !!python/name:os.system\n", "tags", None, 2),
    Hostile("custom-tag", "hf_id: !secret org/name\ndescription: x\n", "YAML tags (!secret)", None, 1),
    Hostile("explicit-str-tag", "hf_id: org/name\ndescription: !!str x\n", "tags", None, 2),
    Hostile("binary-tag", "hf_id: org/name\ndescription: !!binary aGk=\n", "tags", None, 2),
    Hostile("oversize", OK + "# " + "x" * MAX_REQUEST_BYTES + "\n", f"larger than {MAX_REQUEST_BYTES} bytes"),
    Hostile("two-documents", OK + "---\n" + OK, "several YAML documents", None, 3),
    Hostile("empty-file", "", "the file is empty"),
    Hostile("only-comments", "# hf_id: org/name\n", "the file is empty"),
    Hostile("root-list", "- hf_id: org/name\n", "must hold a mapping", None, 1),
    Hostile("root-scalar", "org/name\n", "must hold a mapping", None, 1),
    Hostile("non-string-key", OK + "1: x\n", "is not a plain name", None, 3),
    Hostile("null-key", OK + "~: x\n", "is not a plain name", None, 3),
    Hostile("syntax-unclosed-quote", "hf_id: 'org/name\ndescription: x\n", "not valid YAML", None, 3),
    Hostile("syntax-tab-indent", "hf_id: org/name\n\tdescription: x\n", "not valid YAML", None, 2),
    Hostile("not-utf8", b"hf_id: org/name\ndescription: caf\xe9\n", "not UTF-8"),
    Hostile("hf-id-no-org", "hf_id: name\ndescription: x\n", "exactly 'org/name'", "hf_id", 1),
    Hostile("hf-id-three-parts", "hf_id: a/b/c\ndescription: x\n", "exactly 'org/name'", "hf_id", 1),
    Hostile("hf-id-dot-dot", "hf_id: org/na..me\ndescription: x\n", "'..'", "hf_id", 1),
    Hostile("hf-id-traversal", "hf_id: ../name\ndescription: x\n", "starts/ends", "hf_id", 1),
    Hostile("hf-id-double-dash", "hf_id: org/na--me\ndescription: x\n", "'--'", "hf_id", 1),
    Hostile("hf-id-trailing-newline", 'hf_id: "org/name\\n"\ndescription: x\n', "trailing whitespace", "hf_id", 1),
    Hostile("hf-id-cyrillic-lookalike", "hf_id: org/n\u0430me\ndescription: x\n", "non-ASCII", "hf_id", 1),
    Hostile("hf-id-fullwidth-slash", "hf_id: org\uff0fname\ndescription: x\n", "exactly 'org/name'", "hf_id", 1),
    Hostile("hf-id-too-long", f"hf_id: org/{'n' * 97}\ndescription: x\n", "longer than 96", "hf_id", 1),
    Hostile("hf-id-space", "hf_id: org/my name\ndescription: x\n", "characters the Hub does not allow", "hf_id", 1),
    Hostile("hf-id-url", "hf_id: https://huggingface.co/datasets/org/name\ndescription: x\n", "is a URL", "hf_id", 1),
    Hostile("hf-id-leading-dash", "hf_id: -org/name\ndescription: x\n", "starts/ends", "hf_id", 1),
    Hostile("hf-id-nul", 'hf_id: "org/na\\0me"\ndescription: x\n', "control characters", "hf_id", 1),
    Hostile("description-nul", 'hf_id: org/name\ndescription: "a\\0b"\n', "control characters", "description", 2),
    Hostile("description-too-long", "hf_id: org/name\ndescription: " + "x" * 2001 + "\n", "longer than 2000",
            "description", 2),
    Hostile("split-traversal", OK + "split: ../../etc\n", "is not a split name", "split", 3),
    Hostile("split-slash", OK + "split: train/x\n", "is not a split name", "split", 3),
    Hostile("subset-slash", OK + "subset: en/../../x\n", "is not a subset", "subset", 3),
    Hostile("revision-dot-dot", OK + "revision: main..evil\n", "is not a branch, tag or commit", "revision", 3),
    Hostile("revision-option-like", OK + "revision: --upload-pack=x\n", "is not a branch", "revision", 3),
    Hostile("revision-multiline", OK + 'revision: "a\\nb"\n', "line breaks", "revision", 3),
    Hostile("audio-column-list", OK + "audio_column: [a]\n", "not a list", "audio_column", 3),
    Hostile("path-url", "path: s3://bucket/data\ndescription: x\n", "is a URL", "path", 1),
    Hostile("path-with-revision", "path: ./data\ndescription: x\nrevision: main\n", "no revisions", "revision", 3),
    Hostile("remove-missing-reason", "hf_id: org/name\n", "required field is missing", "reason",
            kind=RequestKind.REMOVE),
    Hostile("remove-has-description", "hf_id: org/name\nreason: x\ndescription: y\n", "unknown field",
            "description", 3, kind=RequestKind.REMOVE),
    Hostile("hf-id-dot-git", "hf_id: org/name.git\ndescription: x\n", "ends with '.git'", "hf_id", 1),
    Hostile("deeply-nested", "hf_id: org/name\ndescription: " + "[" * 5000 + "]" * 5000 + "\n",
            "nests lists or mappings", None, 2),
    Hostile("deeply-nested-mappings", "hf_id: org/name\ndescription: x\nsplit: " + "{a: " * 3000 + "}" * 3000
            + "\n", "nests lists or mappings", None, 3),
    Hostile("null-revision", OK + "revision: null\n", "remove the line to use the default (main)", "revision", 3),
    Hostile("empty-split", OK + "split:\n", "remove the line to use the default (train)", "split", 3),
    Hostile("null-subset", OK + "subset: ~\n", "is empty (null)", "subset", 3),
    Hostile("billion-laughs", "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n", "anchors", None, 1),
]


@pytest.mark.parametrize("case", HOSTILE, ids=[c.id for c in HOSTILE])
def test_hostile_requests_are_refused_naming_file_line_field_and_fix(case: Hostile) -> None:
    request_path = Path("requests") / case.kind.value / f"{case.id}.yaml"
    with pytest.raises(RequestError) as caught:
        parse_request(case.text, request_path=request_path)
    error = caught.value
    assert case.message in str(error)
    assert str(error).startswith(str(request_path))
    assert error.request_path == request_path
    assert error.field == case.field
    if case.line is not None:
        assert error.line == case.line
        assert str(error).startswith(f"{request_path}:{case.line}: ")
    assert error.fix and error.fix in str(error)


def test_there_are_at_least_thirty_hostile_cases() -> None:
    assert len({c.id for c in HOSTILE}) == len(HOSTILE) >= 30


def test_a_minimal_add_request_gets_the_defaults() -> None:
    request = parse_request(OK, request_path=Path("requests/add/x.yaml"))
    assert isinstance(request, AddRequest)
    assert request.dataset.hf_id == "org/name"
    assert (request.dataset.revision, request.dataset.subset, request.dataset.split) == ("main", None, "train")
    assert (request.audio_column, request.text_column) == ("audio", "text")
    assert not request.audio_column_explicit and not request.text_column_explicit


def test_a_full_add_request_keeps_every_field() -> None:
    text = (
        "hf_id: openslr/librispeech_asr\n"
        "description: |\n  LibriSpeech, clean subset.\n  Two lines.\n"
        'revision: "1.10"\n'
        "subset: clean\n"
        "split: train.100\n"
        "audio_column: audio\n"
        "text_column: transcription\n"
    )
    request = parse_request(text, request_path=Path("requests/add/x.yaml"))
    assert isinstance(request, AddRequest)
    assert request.dataset.revision == "1.10"
    assert request.dataset.subset == "clean"
    assert request.dataset.split == "train.100"
    assert request.description == "LibriSpeech, clean subset.\nTwo lines."
    assert request.text_column == "transcription" and request.text_column_explicit


def test_quoted_yaml_keywords_are_plain_text() -> None:
    request = parse_request(OK + 'split: "no"\nsubset: "on"\n')
    assert (request.dataset.split, request.dataset.subset) == ("no", "on")


def test_a_local_path_resolves_against_the_request_file(tmp_path: Path) -> None:
    request_file = tmp_path / "requests" / "add" / "local.yaml"
    request_file.parent.mkdir(parents=True)
    request_file.write_text("path: ../../data/speech.parquet\ndescription: on-prem data\n")
    request = load_request(request_file)
    assert isinstance(request.dataset, LocalRef)
    assert request.dataset.path == request_file.parent / "../../data/speech.parquet"


def test_a_remove_request_is_recognised_by_its_directory(tmp_path: Path) -> None:
    request_file = tmp_path / "requests" / "remove" / "old.yaml"
    request_file.parent.mkdir(parents=True)
    request_file.write_text("hf_id: org/name\nreason: licence withdrawn\nsplit: test\n")
    request = load_request(request_file)
    assert isinstance(request, RemoveRequest)
    assert (request.reason, request.dataset.split, request.dataset.revision) == ("licence withdrawn", "test", "main")


def test_without_a_directory_hint_a_reason_makes_a_removal() -> None:
    assert isinstance(parse_request("hf_id: org/name\nreason: gone\n"), RemoveRequest)
    assert isinstance(parse_request(OK), AddRequest)


def test_an_unreadable_file_is_a_request_error(tmp_path: Path) -> None:
    with pytest.raises(RequestError, match="cannot read the file"):
        load_request(tmp_path / "missing.yaml")


def test_an_oversize_file_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(OK.encode() + b"#" * (50 * MAX_REQUEST_BYTES))
    with pytest.raises(RequestError, match="larger than"):
        load_request(big)


def test_the_shipped_examples_are_valid() -> None:
    root = Path(__file__).resolve().parents[2] / "requests"
    examples = sorted(root.glob("*/*.yaml"))
    assert {p.parent.name for p in examples} == {"add", "remove"}
    for example in examples:
        request = load_request(example)
        assert request.kind.value == example.parent.name


def test_field_lists_follow_the_schema() -> None:
    assert request_fields(RequestKind.ADD)[:5] == ["hf_id", "path", "revision", "subset", "split"]
    assert "reason" in request_fields(RequestKind.REMOVE) and "description" not in request_fields(RequestKind.REMOVE)


@pytest.mark.parametrize("hf_id", ["org/name", "Org_1/name.v2", "_org/_name_", "a/b-c.d_e"])
def test_repo_ids_the_hub_accepts_are_accepted(hf_id: str) -> None:
    assert parse_request(f"hf_id: {hf_id}\ndescription: x\n").dataset.source == hf_id
