"""Settings: the one place that reads the environment and ``.env``. Every variable is in ``.env.example``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hugflow_ray.core.encoding import LEGAL_BITRATES, EncoderSettings
from hugflow_ray.core.licences import DEFAULT_ALLOWED, parse_allowed
from hugflow_ray.errors import SettingsError

DEFAULT_HF_ENDPOINT = "https://huggingface.co"
DEFAULT_GITHUB_API_URL = "https://api.github.com"
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
MAX_DOWNLOAD_CONCURRENCY = 64
MAX_STORAGE_GB = 1e9  # an exabyte: a larger budget is a typo (and inf or 1e308 bytes overflow an integer)

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class Scope(StrEnum):
    """Whose value of a setting a sync run as a Ray job uses: the one rule, read off each field of :class:`Settings`.

    A job on the storage node must judge and convert exactly as its submitter planned (the licence the PR comment
    showed, the bitrate the ledger's fingerprint holds), and must never carry a secret: Ray writes a job's runtime
    env to its logs.
    """

    SYNC = "sync"  # decides what a sync does: a job takes the submitter's value (the default for a field)
    CONTROL = "control"  # the control plane's alone (GitHub, Slack, the catalog, where Ray is): a job never needs it
    NODE = "node"  # a credential (every SecretStr field): never sent; the storage node holds its own


def _control(description: str) -> dict[str, Any]:
    """A field's ``description`` and its scope :attr:`Scope.CONTROL`."""
    return {"description": description, "json_schema_extra": {"scope": Scope.CONTROL.value}}


class Settings(BaseSettings):
    """hugflow-ray's configuration, read from the environment and ``.env`` (the environment wins)."""

    # An empty variable reads as unset (``SLACK_CHANNEL=`` in an env file; an unset sync setting sent to a job).
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True,
                                      env_ignore_empty=True)

    hf_token: SecretStr | None = Field(None, description="Hub token for gated or private datasets.")
    hf_endpoint: str = Field(DEFAULT_HF_ENDPOINT, description="The Hub's base URL (a mirror or a private Hub).")
    storage_root: Path = Field(Path("./datasets"), description="Where dataset directories are written.")
    processed_root: Path = Field(Path("/mnt/data/processed"), description="Where symlinks to finished datasets go.")
    state_dir: Path = Field(Path("./.hugflow-state"), description="Progress files and locks.")
    github_token: SecretStr | None = Field(None, description="GitHub token for PR comments (else `gh auth token`).")
    slack_webhook_url: SecretStr | None = Field(None, description="Slack incoming webhook URL.")
    slack_bot_token: SecretStr | None = Field(None, description="Slack bot token (xoxb-...), with SLACK_CHANNEL.")
    slack_channel: str | None = Field(None, **_control("Slack channel, with a bot token."))
    slack_api_url: str = Field(DEFAULT_SLACK_API_URL, **_control("Slack Web API base URL (bot token only)."))
    github_actions: bool = Field(False, **_control("Set to true by GitHub Actions; `sync --ci-mode` needs it."))
    github_event_path: Path | None = Field(None, **_control("The Actions event file (set by Actions)."))
    github_repository: str | None = Field(None, **_control("owner/name of the repository (set by Actions)."))
    github_api_url: str = Field(DEFAULT_GITHUB_API_URL, **_control("GitHub REST API URL (Enterprise: set by Actions)."))
    sync_approval_label: str = Field(
        "sync-approved", **_control("Label a maintainer puts on a fork PR's reviewed head commit to let it sync.")
    )
    progress_interval: int = Field(10000, ge=1, description="Rows between progress reports.")
    max_concurrent_downloads: int = Field(5, ge=1, le=MAX_DOWNLOAD_CONCURRENCY, description="Parallel downloads.")
    keep_sources: bool = Field(
        False, description="Keep a Hub dataset's downloaded files in the copy's .hugflow/sources after their rows are "
        "converted (by default each file is deleted once all its rows are in the ledger: a sync's disk is its output "
        "plus a few source files)."
    )
    keep_previous_copy: bool = Field(
        False, description="When a copy synced again at a new commit (reusing the rows of its unchanged files) is "
        "complete and takes the old copy's place, keep the old copy under STORAGE_ROOT/.previous/<name>@<commit> "
        "(by default it is deleted: the disk holds one copy of each dataset)."
    )
    auto_merge: bool = Field(False, **_control("Merge the PR when every request succeeded."))
    log_level: LogLevel = Field("INFO", description="Logging level.")
    mp3_bitrate: int = Field(192, description="MP3 CBR bitrate in kbps, clamped per file to the legal maximum.")
    mp3_quality: int = Field(3, ge=0, le=9, description="LAME algorithm quality: 0 best/slowest .. 9 fastest.")
    max_row_error_rate: float = Field(
        0.05, ge=0.0, le=1.0, description="Fail a sync when more than this fraction of rows have unusable audio."
    )
    max_audio_seconds: float = Field(
        14400.0, gt=0, description="Longest audio a row may hold, in seconds; longer rows are row errors (too_long)."
    )
    ray_address: str | None = Field(
        None, **_control("A Ray cluster: its GCS (host:6379) to join, or its job server (http://host:8265) to "
                         "submit syncs to as Ray jobs; unset: an embedded Ray.")
    )
    ray_auth_token: SecretStr | None = Field(None, description="The Ray cluster's token (with RAY_AUTH_MODE=token).")
    storage_resource: str = Field(
        "hugflow_storage", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$",
        description="The Ray custom resource that marks the node owning STORAGE_ROOT.",
    )
    catalog_path: Path = Field(Path("catalog.yaml"), **_control("The curated catalog (``hugflow catalog``)."))
    hugflow_tier: str | None = Field(
        None, **_control("The catalog tier `hugflow reconcile` brings in when no --tier is given (e.g. minimal).")
    )
    max_storage_gb: float | None = Field(
        None, gt=0, le=MAX_STORAGE_GB, allow_inf_nan=False,
        **_control("The storage budget of STORAGE_ROOT in decimal GB; unset: what the disk holds now plus its free "
                   "space.")
    )
    allowed_licences: str | None = Field(
        None, description="Comma-separated SPDX ids a dataset's licence must be one of; unset: the commercially "
        "usable licences (docs/DESIGN.md)."
    )
    hugflow_debug: bool = Field(False, description="Print tracebacks of known errors.")
    hugflow_metrics: bool = Field(True, description="Record hugflow's metrics in Ray (its metrics export port).")

    @field_validator("mp3_bitrate")
    @classmethod
    def _legal_bitrate(cls, value: int) -> int:
        if value not in LEGAL_BITRATES:
            raise ValueError(f"must be an MP3 bitrate: one of {', '.join(map(str, LEGAL_BITRATES))}")
        return value

    @field_validator("allowed_licences")
    @classmethod
    def _licence_ids(cls, value: str | None) -> str | None:
        if value is not None:
            parse_allowed(value)
        return value

    @field_validator("hf_endpoint", "github_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @property
    def ray_job_server(self) -> str | None:
        """The job server's URL when ``RAY_ADDRESS`` names one (``http(s)://``): syncs are then submitted as jobs."""
        address = self.ray_address
        return address.rstrip("/") if address and address.startswith(("http://", "https://")) else None

    @property
    def licence_policy(self) -> frozenset[str]:
        """The licences a dataset may carry (``ALLOWED_LICENCES``, else the commercially usable ones)."""
        return parse_allowed(self.allowed_licences) if self.allowed_licences else DEFAULT_ALLOWED

    @property
    def encoder(self) -> EncoderSettings:
        """The MP3 encoder settings these settings ask for."""
        return EncoderSettings(bitrate_kbps=self.mp3_bitrate, quality=self.mp3_quality)

    def secrets(self) -> list[str]:
        """The secret values configured, for redaction."""
        values = (self.hf_token, self.github_token, self.slack_webhook_url, self.slack_bot_token, self.ray_auth_token)
        return [s.get_secret_value() for s in values if s]


def scope_of(name: str) -> Scope:
    """The scope of the setting ``name`` (a field of :class:`Settings`): a credential's is always NODE."""
    field = Settings.model_fields[name]
    if SecretStr in (field.annotation, *get_args(field.annotation)):
        return Scope.NODE
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return Scope(extra.get("scope", Scope.SYNC.value))


def job_environment(settings: Settings) -> dict[str, str]:
    """The variables a sync run as a Ray job starts with: every SYNC setting as the submitter has it (paths made
    absolute; an unset one empty, which the job reads as unset over whatever its node sets), and nothing else."""
    return {name.upper(): _as_variable(getattr(settings, name)) for name in Settings.model_fields
            if scope_of(name) is Scope.SYNC}


def _as_variable(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        return str(value.absolute())
    return str(value)


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning validation errors into one readable :class:`SettingsError`."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in e.errors(include_input=False)
        )
        raise SettingsError(f"invalid settings: {problems}. Fix the environment or .env (see .env.example).") from None

