"""The Hub adapter: the one module that talks to ``huggingface_hub`` and to the ``datasets`` library's resolution.

Everything is resolved at a pinned commit sha: a revision (branch, tag, sha) is resolved first and the sha is
passed to every later call, so what is validated is exactly what is synced. Subsets (configs), splits and data
files come from the ``datasets`` library's own resolution of the card's ``configs`` / ``data_files``, so what
works with ``load_dataset`` works here. Third-party errors are wrapped into :mod:`hugflow_ray.errors`.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import datasets.config
import httpx2  # the Hub client's HTTP library: its transport errors are not OSErrors
import huggingface_hub
import huggingface_hub.constants
import pyarrow as pa
import pyarrow.parquet as pq
from datasets.exceptions import DatasetNotFoundError
from huggingface_hub import HfApi
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
)
from huggingface_hub.errors import (
    RevisionNotFoundError as HfRevisionNotFoundError,
)

from hugflow_ray.errors import (
    HubError,
    HubUnavailableError,
    RepoAccessError,
    RepoNotFoundError,
    RevisionNotFoundError,
    SplitNotFoundError,
    SubsetNotFoundError,
    UnreadableLayoutError,
)
from hugflow_ray.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_CONFIG = "default"
PARQUET_SUFFIX = ".parquet"
PARQUET_CONVERSION_REF = "refs/convert/parquet"
_HF_URL_PREFIX = "hf://datasets/"


@dataclass(frozen=True)
class RepoSnapshot:
    """A dataset repository at one commit.

    Attributes:
        hf_id: ``org/name``.
        revision: the revision asked for.
        sha: the commit it resolved to.
        card: the dataset card's YAML metadata.
        files: repository paths at that commit.
    """

    hf_id: str
    revision: str
    sha: str
    card: Mapping[str, Any] = field(default_factory=dict)
    files: tuple[str, ...] = ()

    @property
    def license(self) -> str | None:
        value = self.card.get("license")
        if isinstance(value, list):
            return ", ".join(map(str, value)) or None
        return str(value) if value else None

    def rows(self, subset: str | None, split: str) -> int | None:
        """The split's row count as the card's ``dataset_info`` states it (None when it does not)."""
        info = self.card.get("dataset_info")
        infos = info if isinstance(info, list) else [info] if isinstance(info, Mapping) else []
        for entry in infos:
            if not isinstance(entry, Mapping) or entry.get("config_name", "default") != (subset or "default"):
                continue
            for s in entry.get("splits") or []:
                if isinstance(s, Mapping) and s.get("name") == split and isinstance(s.get("num_examples"), int):
                    return s["num_examples"]
        return None


@dataclass(frozen=True)
class SplitLayout:
    """Where one split's rows are and what columns they have.

    Attributes:
        subset: the config name, or None for a single-config dataset.
        split: the split name.
        data_files: the split's files in read order: repository paths (Hub) or local paths.
        columns: column name -> feature type name (``Audio``, ``Value``...), or None when the format keeps
            them unknown until the sync reads the files.
        format: the reader ``datasets`` picked (``parquet``, ``audiofolder``, ``webdataset``, ``arrow``...).
    """

    subset: str | None
    split: str
    data_files: tuple[str, ...]
    columns: Mapping[str, str] | None
    format: str

    @property
    def audio_columns(self) -> list[str]:
        return [name for name, kind in (self.columns or {}).items() if kind == "Audio"]


class _SharedLock:
    """Many holders at once in shared mode, or one alone in exclusive mode (a readers-writer lock)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._shared = 0
        self._exclusive = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._condition:
            self._condition.wait_for(lambda: not self._exclusive)
            self._shared += 1
        try:
            yield
        finally:
            with self._condition:
                self._shared -= 1
                self._condition.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._condition:
            self._condition.wait_for(lambda: not self._exclusive and self._shared == 0)
            self._exclusive = True
        try:
            yield
        finally:
            with self._condition:
                self._exclusive = False
                self._condition.notify_all()


# The libraries' module-level endpoint settings. Scopes that change them hold it exclusively; downloads, whose
# URLs are built from huggingface_hub's template and then moved to their own endpoint, hold it shared.
_LIBRARY_SETTINGS = _SharedLock()


@contextmanager
def _libraries_at(endpoint: str) -> Iterator[None]:
    """``datasets`` (and the ``huggingface_hub`` defaults it falls back on) pointed at ``endpoint`` for the calls
    inside, and put back as they were after.

    ``datasets`` reads the endpoint from module constants at call time and takes no parameter for it, so its
    resolution runs in this exclusive scope: two Hubs in one process never see each other's endpoint, and nothing
    outlives the call. The scope also turns off the requests ``datasets`` makes on its own (download counters,
    the parquet-export service): a sync downloads exactly the files it resolved, and nothing else.
    """
    endpoint = endpoint.rstrip("/")
    hc, dc = huggingface_hub.constants, datasets.config
    values: dict[tuple[Any, str], Any] = {
        (hc, "ENDPOINT"): endpoint,
        (hc, "HUGGINGFACE_CO_URL_TEMPLATE"): endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        (dc, "HF_ENDPOINT"): endpoint,
        (dc, "HUB_DATASETS_URL"): endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}",
        (dc, "HF_UPDATE_DOWNLOAD_COUNTS"): False,
        (dc, "USE_PARQUET_EXPORT"): False,
    }
    with _LIBRARY_SETTINGS.exclusive():
        saved = {key: getattr(*key) for key in values}
        for (module, name), value in values.items():
            setattr(module, name, value)
        try:
            yield
        finally:
            for (module, name), value in saved.items():
                setattr(module, name, value)


class Hub:
    """Resolves dataset requests against a Hub (or a Hub-compatible mirror) at ``endpoint``."""

    def __init__(self, *, endpoint: str, token: str | None = None) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.token = token
        self._api = HfApi(endpoint=self.endpoint, token=token or False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Hub:
        """The Hub client these settings point at (``HF_ENDPOINT``, ``HF_TOKEN``)."""
        token = settings.hf_token.get_secret_value() if settings.hf_token else None
        return cls(endpoint=settings.hf_endpoint, token=token)

    def snapshot(self, hf_id: str, revision: str) -> RepoSnapshot:
        """Resolve ``revision`` of the dataset ``hf_id`` to a commit.

        Raises:
            RepoNotFoundError, RepoAccessError, RevisionNotFoundError, HubUnavailableError.
        """
        try:
            with self._errors(hf_id, revision):
                info = self._api.dataset_info(hf_id, revision=revision)
        except RepoNotFoundError:
            # Some servers (mirrors) answer an unknown revision like an unknown repo: tell the two apart.
            refs = self._refs(hf_id)
            if refs is None:
                raise
            raise RevisionNotFoundError(
                f"{hf_id} has no revision {revision!r}. Available branches and tags: {', '.join(refs) or 'none'}; "
                "or use a full commit sha.",
                hf_id=hf_id,
                revision=revision,
            ) from None
        card = info.card_data.to_dict() if info.card_data is not None else {}
        files = tuple(sibling.rfilename for sibling in info.siblings or ())
        if info.sha is None:
            raise HubUnavailableError(
                f"the Hub at {self.endpoint} named no commit for {hf_id}@{revision}; try again later.",
                hf_id=hf_id,
                revision=revision,
            )
        return RepoSnapshot(hf_id=hf_id, revision=revision, sha=info.sha, card=card, files=files)

    def file_metadata(self, snapshot: RepoSnapshot) -> dict[str, dict[str, Any]]:
        """Size and checksums of the snapshot's files: path -> {size, sha256, blob_id} (what the Hub knows)."""
        with self._errors(snapshot.hf_id, snapshot.sha):
            info = self._api.dataset_info(snapshot.hf_id, revision=snapshot.sha, files_metadata=True)
        metadata: dict[str, dict[str, Any]] = {}
        for sibling in info.siblings or ():
            lfs = sibling.lfs
            metadata[sibling.rfilename] = {
                "size": lfs.size if lfs is not None else sibling.size,
                "sha256": lfs.sha256 if lfs is not None else None,
                "blob_id": sibling.blob_id,
            }
        if any(m["blob_id"] is None for m in metadata.values()):  # a mirror that lists names only: ask the tree
            with self._errors(snapshot.hf_id, snapshot.sha):
                tree = self._api.list_repo_tree(snapshot.hf_id, revision=snapshot.sha, repo_type="dataset",
                                                recursive=True)
                for entry in tree:
                    if isinstance(entry, huggingface_hub.hf_api.RepoFile):
                        metadata[entry.path] = {
                            "size": entry.lfs.size if entry.lfs is not None else entry.size,
                            "sha256": entry.lfs.sha256 if entry.lfs is not None else None,
                            "blob_id": entry.blob_id,
                        }
        return metadata

    def cached(self, hf_id: str, sha: str, path: str, *, local_dir: Path) -> Path | None:
        """The file at ``local_dir / path`` linked (or copied) from the Hub cache, without a request, such as the
        shard a plan read its columns from; None when the cache does not hold it (:meth:`download` fetches it)."""
        with self._errors(hf_id, sha), _LIBRARY_SETTINGS.shared():
            return _from_cache(hf_id, sha, path, local_dir)

    def download(self, hf_id: str, sha: str, path: str, *, local_dir: Path | None = None) -> Path:
        """Download one file of the dataset at commit ``sha`` into the Hub cache, or under ``local_dir`` (a folder of
        the caller's own, which it may delete from; ask :meth:`cached` first for a file the Hub cache may hold);
        resumes partial downloads."""
        with self._errors(hf_id, sha), _LIBRARY_SETTINGS.shared():
            return Path(
                huggingface_hub.hf_hub_download(
                    hf_id, path, repo_type="dataset", revision=sha, endpoint=self.endpoint, token=self.token or False,
                    local_dir=local_dir,
                )
            )

    def _refs(self, hf_id: str) -> list[str] | None:
        """Branch and tag names, or None when the repository itself is not reachable."""
        try:
            with self._errors(hf_id, None):
                refs = self._api.list_repo_refs(hf_id, repo_type="dataset")
        except HubError:  # mirrors answer refs of an unknown repo with 401 or 404
            return None
        return [ref.name for ref in (*refs.branches, *refs.tags)]

    def subsets(self, snapshot: RepoSnapshot) -> list[str]:
        """The dataset's subsets (configs) at the snapshot's commit."""
        with self._errors(snapshot.hf_id, snapshot.sha), _libraries_at(self.endpoint):
            try:
                names = datasets.get_dataset_config_names(snapshot.hf_id, revision=snapshot.sha, token=self.token)
            except (RuntimeError, FileNotFoundError) as e:  # a loading script, or no data files datasets reads
                raise UnreadableLayoutError(
                    f"{snapshot.hf_id}@{snapshot.sha[:12]} cannot be read from its own files: {e}",
                    hf_id=snapshot.hf_id,
                    revision=snapshot.sha,
                ) from e
            return list(names)

    def parquet_conversion(self, snapshot: RepoSnapshot, subset: str | None, split: str) -> tuple[str, SplitLayout]:
        """The split from the Hub's parquet conversion (``refs/convert/parquet``): its commit and layout.

        The Hub converts the main branch of datasets it can read to ``<config>/<split>/NNNN.parquet``.

        Raises:
            UnreadableLayoutError: there is no conversion. SubsetNotFoundError, SplitNotFoundError.
        """
        hf_id = snapshot.hf_id
        with self._errors(hf_id, PARQUET_CONVERSION_REF):
            refs = self._api.list_repo_refs(hf_id, repo_type="dataset")
            convert = next((r for r in refs.converts if r.ref == PARQUET_CONVERSION_REF), None)
            if convert is None:
                raise UnreadableLayoutError(
                    f"{hf_id} cannot be read from its own files and the Hub has no parquet conversion of it "
                    f"({PARQUET_CONVERSION_REF}); ask its authors to publish parquet",
                    hf_id=hf_id,
                    revision=snapshot.sha,
                )
            info = self._api.dataset_info(hf_id, revision=convert.target_commit)
        files = sorted(s.rfilename for s in info.siblings or () if s.rfilename.endswith(PARQUET_SUFFIX))
        configs = sorted({f.split("/")[0] for f in files if f.count("/") >= 2})
        if subset is None and len(configs) == 1:
            config: str | None = configs[0]
        elif subset is None and DEFAULT_CONFIG in configs:
            config = DEFAULT_CONFIG
        else:
            config = _pick_subset(hf_id, configs, subset, convert.target_commit)
        by_split: dict[str, list[str]] = {}
        for f in files:
            parts = f.split("/")
            if len(parts) >= 3 and parts[0] == config:
                by_split.setdefault(parts[1].removeprefix("partial-"), []).append(f)
        if split not in by_split:
            raise SplitNotFoundError(
                f"the parquet conversion of {hf_id} has no split {split!r} in {config!r}. "
                f"Available splits: {', '.join(sorted(by_split)) or 'none'}.",
                hf_id=hf_id,
                revision=convert.target_commit,
            )
        converted = RepoSnapshot(hf_id=hf_id, revision=PARQUET_CONVERSION_REF, sha=convert.target_commit)
        paths = by_split[split]
        columns = self._parquet_columns(converted, paths)
        return convert.target_commit, SplitLayout(subset, split, tuple(paths), columns, "parquet")

    def split_layout(self, snapshot: RepoSnapshot, subset: str | None, split: str) -> SplitLayout:
        """Resolve a subset and split of a Hub dataset to its data files and columns.

        Raises:
            SubsetNotFoundError, SplitNotFoundError: with the available names in the message.
        """
        available = self.subsets(snapshot)
        with self._errors(snapshot.hf_id, snapshot.sha), _libraries_at(self.endpoint):
            layout = resolve_split(snapshot.hf_id, available, subset, split, revision=snapshot.sha, token=self.token)
        paths = [self._repo_path(snapshot, f) for f in layout.data_files]
        columns = layout.columns
        if columns is None and layout.format == "parquet":
            columns = self._parquet_columns(snapshot, paths)
        return SplitLayout(
            subset=layout.subset, split=layout.split, data_files=tuple(paths), columns=columns, format=layout.format
        )

    @staticmethod
    def _repo_path(snapshot: RepoSnapshot, url: str) -> str:
        prefix = f"{_HF_URL_PREFIX}{snapshot.hf_id}@{snapshot.sha}/"
        return url[len(prefix) :] if url.startswith(prefix) else url

    def _parquet_columns(self, snapshot: RepoSnapshot, paths: list[str]) -> dict[str, str]:
        """Columns of the split from its first shard's schema (downloaded whole: mirrors may ignore Range)."""
        return parquet_columns(self.download(snapshot.hf_id, snapshot.sha, paths[0]))

    @contextmanager
    def _errors(self, hf_id: str, revision: str | None) -> Iterator[None]:
        """Translate the Hub client's and ``datasets``' errors into hugflow-ray's, with the next step."""
        where = f"{self.endpoint}/datasets/{hf_id}"
        try:
            yield
        except GatedRepoError as e:
            raise RepoAccessError(
                f"{hf_id} is a gated dataset and HF_TOKEN is {'missing' if not self.token else 'not granted access'}. "
                f"Accept its conditions at {where} with the account whose token is in HF_TOKEN.",
                hf_id=hf_id,
                revision=revision,
            ) from e
        except HfRevisionNotFoundError as e:
            raise RevisionNotFoundError(
                f"{hf_id} has no revision {revision!r}. Use a branch, a tag or a full commit sha that exists.",
                hf_id=hf_id,
                revision=revision,
            ) from e
        except (RepositoryNotFoundError, DatasetNotFoundError) as e:
            if isinstance(e, DatasetNotFoundError) and "is a gated dataset" in str(e):
                raise RepoAccessError(
                    f"{hf_id} is a gated dataset and HF_TOKEN lacks access. Accept its conditions at {where}.",
                    hf_id=hf_id,
                    revision=revision,
                ) from e
            hint = "check the id" if self.token else "check the id, or set HF_TOKEN if it is private"
            raise RepoNotFoundError(
                f"{hf_id} was not found at {self.endpoint} (or is private and HF_TOKEN "
                f"{'lacks access to it' if self.token else 'is missing'}): {hint}.",
                hf_id=hf_id,
                revision=revision,
            ) from e
        except EntryNotFoundError as e:
            raise HubError(f"{hf_id}@{revision}: a data file is missing: {e}", hf_id=hf_id, revision=revision) from e
        except HfHubHTTPError as e:
            status = e.response.status_code if e.response is not None else None
            if status in (401, 403):
                raise RepoAccessError(
                    f"{hf_id}: the Hub refused access ({status}). Set HF_TOKEN to a token with read access to it.",
                    hf_id=hf_id,
                    revision=revision,
                ) from e
            raise HubUnavailableError(
                f"the Hub at {self.endpoint} failed ({status or 'no answer'}) while reading {hf_id}; try again later.",
                hf_id=hf_id,
                revision=revision,
            ) from e
        except (ConnectionError, OSError, httpx2.TransportError) as e:
            if isinstance(e, HubError):
                raise
            raise HubUnavailableError(
                f"the Hub at {self.endpoint} could not be reached while reading {hf_id}: {e}. "
                "Check HF_ENDPOINT and the network.",
                hf_id=hf_id,
                revision=revision,
            ) from e


def resolve_split(
    source: str, available: list[str], subset: str | None, split: str, *, revision: str | None, token: str | None
) -> SplitLayout:
    """Resolve a subset and split with the ``datasets`` library (a Hub id at ``revision``, or a local directory)."""
    config = _pick_subset(source, available, subset, revision)
    builder = datasets.load_dataset_builder(source, config, revision=revision, token=token)
    data_files = builder.config.data_files or {}
    if split not in data_files:
        names = ", ".join(map(str, data_files)) or "none"
        where = f"subset {config!r}" if subset else source
        raise SplitNotFoundError(
            f"{where} has no split {split!r}. Available splits: {names}.", hf_id=source, revision=revision
        )
    features = builder.info.features
    columns = {name: type(feature).__name__ for name, feature in features.items()} if features else None
    return SplitLayout(
        subset=subset,
        split=split,
        data_files=tuple(str(f) for f in data_files[split]),
        columns=columns,
        format=builder.name,
    )


def _pick_subset(source: str, available: list[str], subset: str | None, revision: str | None) -> str | None:
    if subset is None:
        if len(available) > 1:
            raise SubsetNotFoundError(
                f"{source} has several subsets: {', '.join(available)}. Choose one with 'subset:'.",
                hf_id=source,
                revision=revision,
            )
        return available[0] if available else None
    if subset not in available:
        raise SubsetNotFoundError(
            f"{source} has no subset {subset!r}. Available subsets: {', '.join(available) or 'none'}.",
            hf_id=source,
            revision=revision,
        )
    return subset


def _from_cache(hf_id: str, sha: str, path: str, local_dir: Path) -> Path | None:
    """The Hub cache's copy of a file, put at ``local_dir / path`` (a hard link where the filesystem allows, else a
    copy); None when the cache does not hold it."""
    cached = huggingface_hub.try_to_load_from_cache(hf_id, path, revision=sha, repo_type="dataset")
    if not isinstance(cached, str):
        return None
    target = local_dir / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(os.path.realpath(cached), target)
    except OSError:
        shutil.copyfile(cached, target)
    return target


def parquet_columns(path: Path) -> dict[str, str]:
    """Column name -> feature type name, from a parquet file's schema (``datasets`` metadata when present).

    Raises:
        HubError: the file is not a readable parquet file.
    """
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as e:
        raise HubError(f"{path} is not a readable parquet file ({e}); check that it is the dataset's file and "
                       "complete", hf_id=str(path)) from None
    try:
        features = datasets.Features.from_arrow_schema(schema)
    except (ValueError, TypeError, KeyError):
        return {name: str(schema.field(name).type) for name in schema.names}
    return {name: type(feature).__name__ for name, feature in features.items()}


def local_layout(path: Path, subset: str | None, split: str) -> SplitLayout:
    """Resolve a local dataset: a parquet file (one split) or a directory in Hub layout."""
    if path.is_file():
        if path.suffix != PARQUET_SUFFIX:
            raise HubError(f"{path} is not a parquet file or a directory", hf_id=str(path))
        return SplitLayout(subset, split, (str(path),), parquet_columns(path), "parquet")
    if not path.is_dir():
        raise RepoNotFoundError(f"{path} does not exist", hf_id=str(path))
    try:
        available = list(datasets.get_dataset_config_names(str(path)))
        layout = resolve_split(str(path), available, subset, split, revision=None, token=None)
    except (FileNotFoundError, DatasetNotFoundError, ValueError) as e:
        if isinstance(e, HubError):
            raise
        raise HubError(f"{path} is not a dataset directory datasets can read: {e}", hf_id=str(path)) from e
    if layout.columns is None and layout.format == "parquet":
        layout = SplitLayout(
            layout.subset, layout.split, layout.data_files, parquet_columns(Path(layout.data_files[0])), layout.format
        )
    return layout

