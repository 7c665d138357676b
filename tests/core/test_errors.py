"""Every error hugflow-ray raises survives a process boundary: Ray pickles what a task or an actor raises."""

from __future__ import annotations

import inspect
import pickle
from pathlib import Path

import pytest

from hugflow_ray import errors
from hugflow_ray.copies import ledger

MODULES_WITH_ERRORS = (errors, ledger)

# A value of each kind a constructor takes, distinct enough that a field restored from the wrong place shows.
SAMPLES: dict[str, object] = {
    "problem": "the problem", "fix": "the fix", "request_path": Path("requests/add/x.yaml"), "line": 7,
    "field": "hf_id", "catalog_path": Path("catalog.yaml"), "hf_id": "org/name", "revision": "v2",
    "dataset_name": "org__name__split_train__rev_main", "row_id": 41, "signum": 15, "rows_kept": 3, "rows_total": 9,
    "url": "https://example.invalid/a.tar", "status": 503, "expected": "ab" * 32, "actual": 12, "transient": True,
    "archive": Path("a.tar"), "member": "x/../../y",
}


def error_types() -> list[type[BaseException]]:
    return sorted({cls for module in MODULES_WITH_ERRORS for cls in vars(module).values()
                   if isinstance(cls, type) and issubclass(cls, BaseException) and cls.__module__ == module.__name__},
                  key=lambda cls: cls.__qualname__)


def build(cls: type[BaseException]) -> BaseException:
    """An instance with every parameter of its constructor given a value (positional ones a message)."""
    positional, keywords = [], {}
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        value = SAMPLES.get(name, f"{cls.__name__}: what went wrong")
        if parameter.kind is parameter.KEYWORD_ONLY:
            keywords[name] = value
        else:
            positional.append(value)
    if not positional and not keywords:
        return cls(f"{cls.__name__}: what went wrong")
    return cls(*positional, **keywords)


def test_the_errors_are_all_found() -> None:
    names = {cls.__name__ for cls in error_types()}
    assert {"RequestError", "CatalogError", "HubError", "ArchiveError", "Interrupted", "LedgerDamagedError"} <= names
    assert len(names) >= 31


@pytest.mark.parametrize("cls", error_types(), ids=lambda cls: cls.__name__)
def test_every_error_round_trips_through_pickle_with_its_message_and_fields(cls: type[BaseException]) -> None:
    error = build(cls)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert str(copy) == str(error) and copy.args == error.args
    assert vars(copy) == vars(error)

