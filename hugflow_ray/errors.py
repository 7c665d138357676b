"""Typed errors of hugflow-ray.

Every error carries the fields a user needs to find the problem (file, line, field, dataset, row) and says
what to do next. Third-party errors are wrapped at the adapter that meets them (``raise HubError(...) from e``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _rebuilt(cls: type[BaseException], args: tuple[Any, ...], fields: dict[str, Any]) -> BaseException:
    """An error as it was pickled: its arguments and fields restored without calling ``__init__`` again, whose
    keyword-only arguments the pickled ``args`` do not carry."""
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(fields)
    return error


class _RoundTrips(BaseException):
    """An error that survives pickling with its message and fields (Ray pickles what a task or an actor raises), as
    huggingface_hub's ``HfHubHTTPError`` does: ``__reduce__`` restores the state instead of calling ``__init__``."""

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuilt, (type(self), self.args, dict(self.__dict__))


class HugflowError(_RoundTrips, Exception):
    """Base class of every error hugflow-ray raises on purpose; each round-trips through pickle."""


class SettingsError(HugflowError, ValueError):
    """A setting from the environment or ``.env`` is invalid."""


class RequestError(HugflowError, ValueError):
    """A request file is malformed: the message names the file, line, field and the fix.

    Attributes:
        request_path: the request file, when the request came from a file.
        line: 1-based line in that file, when known.
        field: the request field at fault, when one is.
        problem: what is wrong.
        fix: what to do about it.
    """

    unnamed = "<request>"  # where a message says the problem is when the text came from no file

    def __init__(
        self,
        problem: str,
        *,
        fix: str,
        request_path: Path | str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.problem = problem
        self.fix = fix
        self.request_path = Path(request_path) if request_path is not None else None
        self.line = line
        self.field = field
        super().__init__(self._render())

    def _render(self) -> str:
        where = str(self.request_path) if self.request_path is not None else self.unnamed
        if self.line is not None:
            where += f":{self.line}"
        what = f"{self.field}: {self.problem}" if self.field else self.problem
        return f"{where}: {what}. {self.fix}"


class CatalogError(RequestError):
    """The catalog file is malformed: the message names the file, line, field path (``datasets[2].source.sha256``,
    0-based like Python) and the fix. A RequestError, because the catalog is read by the request's strict rules.

    Attributes:
        catalog_path: the catalog file, when the catalog came from a file (also ``request_path``).
    """

    unnamed = "<catalog>"

    def __init__(
        self,
        problem: str,
        *,
        fix: str,
        catalog_path: Path | str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.catalog_path = Path(catalog_path) if catalog_path is not None else None
        super().__init__(problem, fix=fix, request_path=catalog_path, line=line, field=field)


class HubError(HugflowError):
    """The Hub could not give what a request needs.

    Attributes:
        hf_id: the dataset repository id.
        revision: the revision asked for, when one was.
    """

    def __init__(self, message: str, *, hf_id: str, revision: str | None = None) -> None:
        self.hf_id = hf_id
        self.revision = revision
        super().__init__(message)


class RepoNotFoundError(HubError, LookupError):
    """The dataset repository does not exist (or is hidden from this token)."""


class RepoAccessError(HubError, PermissionError):
    """The repository is gated or private and the token is missing or lacks access."""


class RevisionNotFoundError(HubError, LookupError):
    """The revision (branch, tag or commit) does not exist in the repository."""


class SubsetNotFoundError(HubError, LookupError):
    """The subset (config) does not exist in the dataset."""


class SplitNotFoundError(HubError, LookupError):
    """The split does not exist in the chosen subset."""


class UnreadableLayoutError(HubError):
    """The repository's own files cannot be read (a loading script, no data files)."""


class HubUnavailableError(HubError, ConnectionError):
    """The Hub could not be reached or answered with a server error."""


class PlanError(HugflowError, ValueError):
    """A request cannot be turned into a sync plan (columns, layout); the message says what to change."""


class LicenceError(PlanError):
    """The dataset's licence is outside the licence policy (``ALLOWED_LICENCES``) and no override says why it may
    come in anyway, or a catalog's licence disagrees with the dataset card's."""


class SyncError(HugflowError, RuntimeError):
    """A sync could not run or finish: locked, settings changed since the last run, too many row errors."""


class DatasetNotFoundError(SyncError, LookupError):
    """No dataset copy of that name under ``STORAGE_ROOT``.

    Attributes:
        dataset_name: the name asked for.
    """

    def __init__(self, message: str, *, dataset_name: str) -> None:
        self.dataset_name = dataset_name
        super().__init__(message)


class RepairError(HugflowError, RuntimeError):
    """A dataset copy cannot be repaired as it was made (no ledger, another format or encoder); nothing was changed."""


class DamagedStateError(HugflowError, ValueError):
    """A state file hugflow-ray wrote (a dataset's status) cannot be read; the message names it and the way out."""


class AudioError(HugflowError, ValueError):
    """One row's audio cannot be converted. The row is recorded as failed; nothing is written for it.

    Attributes:
        code: a short stable name of the failure kind, stored in the ledger.
        row_id: the row, when known.
    """

    code = "audio"

    def __init__(self, message: str, *, row_id: int | None = None) -> None:
        self.row_id = row_id
        super().__init__(message)


class AudioDecodeError(AudioError):
    """The bytes are not audio any decoder here can read."""

    code = "undecodable"


class TruncatedAudioError(AudioError):
    """The audio decoded to fewer samples than its header declares."""

    code = "truncated"


class EmptyAudioError(AudioError):
    """The audio holds no samples."""

    code = "empty"


class NonFiniteAudioError(AudioError):
    """The samples contain NaN or infinity."""

    code = "non_finite"


class AudioTooLongError(AudioError):
    """The audio is longer than a row may hold (``MAX_AUDIO_SECONDS``)."""

    code = "too_long"


class AudioFormatError(AudioError):
    """The audio value has a shape, type or sample rate this codec does not accept."""

    code = "format"


class UnsafeAudioPathError(AudioError):
    """An audio ``path`` points outside the dataset's own files (a URL, an absolute path, ``..``)."""

    code = "unsafe_path"


class CIError(HugflowError, RuntimeError):
    """``sync --ci-mode`` cannot run here: not in GitHub Actions, no pull request in the event, no token."""


class GitHubError(HugflowError, ConnectionError):
    """The GitHub API refused or kept failing after the retries; the message says which call and why."""


class Interrupted(_RoundTrips):  # noqa: N818 - like KeyboardInterrupt, which it stands beside
    """A sync stopped by SIGINT or SIGTERM. A BaseException, as KeyboardInterrupt is: nothing catches it by accident.

    Attributes:
        signum: the signal.
        dataset_name: the dataset being synced, once known.
        rows_kept: finished rows its ledger keeps (a re-run resumes after them), once known.
        rows_total: the split's rows, once known.
    """

    def __init__(self, signum: int, *, dataset_name: str | None = None, rows_kept: int | None = None,
                 rows_total: int | None = None) -> None:
        self.signum, self.dataset_name, self.rows_kept, self.rows_total = signum, dataset_name, rows_kept, rows_total
        super().__init__(signum)


# ---- URL sources of the catalog: downloads and archives ----


class SourceError(HugflowError):
    """A URL source cannot be downloaded, or what arrived is not what the catalog declares.

    Attributes:
        url: the source's URL, without any credentials it carried.
        status: the HTTP status the server answered, when it answered one.
        expected: what the catalog declares (a sha256 or a size in bytes), when the failure is a mismatch.
        actual: what arrived instead, when the failure is a mismatch.
        transient: whether running again may succeed; the partial download is then kept for the next run to resume.
        retry_after: the seconds the server asked to wait before asking again (``Retry-After``), when it did.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        expected: str | int | None = None,
        actual: str | int | None = None,
        transient: bool = False,
        retry_after: float | None = None,
    ) -> None:
        self.url, self.status, self.expected, self.actual = url, status, expected, actual
        self.transient, self.retry_after = transient, retry_after
        super().__init__(message)


class ArchiveError(SourceError):
    """An archive cannot be extracted safely: a member would land outside the target, is a link or a device, or
    the archive expands past its limits. Nothing is left at the target or beside it.

    Attributes:
        archive: the archive file.
        member: the member at fault, when one is.
    """

    def __init__(self, message: str, *, archive: Path, member: str | None = None) -> None:
        self.archive, self.member = archive, member
        super().__init__(message)
