"""Settings from the environment and .env, and redaction of secrets from every log line."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from hugflow_ray.errors import SettingsError
from hugflow_ray.settings import Settings, load_settings
from hugflow_ray.utils.redact import REDACTED, RedactingFilter, configure_logging, redact

CANARY_HF = "hf_CanaryCanaryCanaryCanary0123456789"
CANARY_SLACK = "https://hooks.slack.com/services/T000/B000/CanarySecretValue"


def test_defaults_match_the_documented_contract() -> None:
    settings = load_settings()
    assert settings.storage_root == Path("datasets")
    assert settings.processed_root == Path("/mnt/data/processed")
    assert settings.state_dir == Path(".hugflow-state")
    assert (settings.progress_interval, settings.max_concurrent_downloads) == (10000, 5)
    assert (settings.auto_merge, settings.log_level, settings.mp3_bitrate, settings.mp3_quality) == (
        False, "INFO", 192, 3
    )
    assert settings.hf_token is None and settings.github_token is None and settings.slack_webhook_url is None


def test_the_environment_overrides_dotenv_which_overrides_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("STORAGE_ROOT=/from/dotenv\nMP3_BITRATE=128\nAUTO_MERGE=true\n")
    monkeypatch.setenv("MP3_BITRATE", "256")
    settings = load_settings()
    assert settings.storage_root == Path("/from/dotenv")
    assert settings.mp3_bitrate == 256
    assert settings.auto_merge is True
    assert settings.encoder.bitrate_kbps == 256


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MP3_BITRATE", "100", "MP3_BITRATE: Value error, must be an MP3 bitrate"),
        ("MP3_QUALITY", "12", "MP3_QUALITY"),
        ("PROGRESS_INTERVAL", "0", "PROGRESS_INTERVAL"),
        ("MAX_CONCURRENT_DOWNLOADS", "many", "MAX_CONCURRENT_DOWNLOADS"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL"),
        ("HF_ENDPOINT", "ftp://hub", "HF_ENDPOINT: Value error, must be an http(s) URL"),
    ],
)
def test_invalid_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match="invalid settings") as caught:
        load_settings()
    assert message in str(caught.value)
    assert ".env.example" in str(caught.value)


def test_secrets_never_show_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", CANARY_HF)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", CANARY_SLACK)
    settings = load_settings()
    assert CANARY_HF not in repr(settings) and CANARY_SLACK not in repr(settings)
    assert set(settings.secrets()) == {CANARY_HF, CANARY_SLACK}


def test_every_setting_is_documented_in_env_example() -> None:
    example = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    for name in Settings.model_fields:
        assert f"\n{name.upper()}=" in "\n" + example or f"\n# {name.upper()}=" in "\n" + example, name


@pytest.mark.parametrize(
    "token",
    [
        "hf_" + "a1B2" * 8,
        "api_org_" + "Z9" * 10,
        "https://hooks.slack.com/services/T0AAA/B0BBB/ccccccccccccccc",
        "https://hooks.slack.com/workflows/T0AAA/A0/1/abc",
        "xoxb-1234567890-abcdefghij",
        "ghp_" + "x" * 36,
        "github_pat_" + "A1_" * 10,
    ],
)
def test_token_shapes_are_redacted_without_being_configured(token: str) -> None:
    assert redact(f"failed with {token}, retrying") == f"failed with {REDACTED}, retrying"


@pytest.mark.parametrize(("text", "shown"), [
    ("RAY_ADDRESS=http://user:pass@head:8265 refused", f"RAY_ADDRESS=http://{REDACTED}@head:8265 refused"),
    ("see https://tok3n@example.org/x.tar?y=1.", f"see https://{REDACTED}@example.org/x.tar?y=1."),
    ("'ftp://a:b@h/p' and s3://key:secret@bucket/k", f"'ftp://{REDACTED}@h/p' and s3://{REDACTED}@bucket/k"),
    ("mail me@example.org at http://example.org/a@b", "mail me@example.org at http://example.org/a@b"),
])
def test_the_user_info_of_every_url_is_redacted(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_a_shown_url_keeps_everything_but_its_user_info() -> None:
    from hugflow_ray.utils.redact import shown_url

    assert shown_url("http://user:pass@head:8265/api?x=1#f") == "http://head:8265/api?x=1#f"
    assert shown_url("http://head:8265") == "http://head:8265"


def test_configured_secrets_of_any_shape_are_redacted() -> None:
    assert redact("password=opensesame1 ok", ["opensesame1"]) == f"password={REDACTED} ok"
    assert redact("short ab", ["ab"]) == "short ab"


def test_a_configured_prefix_of_a_longer_token_redacts_the_whole_token() -> None:
    assert redact(f"{CANARY_HF}XYZ", [CANARY_HF]) == REDACTED


def test_log_records_are_redacted_in_message_args_and_traceback(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("hugflow.test")
    caplog.handler.addFilter(RedactingFilter([CANARY_SLACK]))
    try:
        raise RuntimeError(f"posting to {CANARY_SLACK} failed")
    except RuntimeError:
        logger.exception("token %s and url %s", CANARY_HF, CANARY_SLACK)
    text = caplog.text
    assert "posting to" in text and "token" in text
    assert CANARY_HF not in text and CANARY_SLACK not in text
    assert text.count(REDACTED) >= 3


def test_configure_logging_installs_one_redacting_handler(capfd: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    configure_logging("INFO", [CANARY_SLACK])
    configure_logging("INFO", [CANARY_SLACK])
    assert sum(getattr(h, "_hugflow", False) for h in root.handlers) == 1
    logging.getLogger("third.party").warning("url=%s token=%s", CANARY_SLACK, CANARY_HF)
    err = capfd.readouterr().err
    assert "url=[REDACTED] token=[REDACTED]" in err


def test_a_handler_a_library_added_before_ours_never_sees_a_secret() -> None:
    """Ray adds a root handler when it starts in process; slack_sdk logs the webhook URL when it retries."""
    seen = io.StringIO()
    foreign = logging.StreamHandler(seen)
    logging.getLogger().addHandler(foreign)
    configure_logging("INFO", [CANARY_SLACK])
    try:
        raise ConnectionError(f"POST {CANARY_SLACK} refused")
    except ConnectionError:
        logging.getLogger("slack_sdk.webhook.client").info("retrying POST %s", CANARY_SLACK, exc_info=True)
    assert "retrying POST [REDACTED]" in seen.getvalue() and "refused" in seen.getvalue()
    assert CANARY_SLACK not in seen.getvalue()


def test_the_driver_environment_keeps_the_hub_token_and_drops_github_and_slack(monkeypatch: pytest.MonkeyPatch) -> None:
    from hugflow_ray.drivers.local import driver_environment

    for name, value in {"HF_TOKEN": CANARY_HF, "GITHUB_TOKEN": "ghs_x", "GH_TOKEN": "gho_x",
                        "SLACK_WEBHOOK_URL": CANARY_SLACK, "SLACK_BOT_TOKEN": "xoxb-x", "STORAGE_ROOT": "/data",
                        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "oidc"}.items():
        monkeypatch.setenv(name, value)
    env = driver_environment()
    assert env["HF_TOKEN"] == CANARY_HF and env["STORAGE_ROOT"] == "/data"
    assert not {"GITHUB_TOKEN", "GH_TOKEN", "SLACK_WEBHOOK_URL", "SLACK_BOT_TOKEN",
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN"} & set(env)


# --- whose settings a sync run as a Ray job uses -----------------------------------------------------------------

# The storage node's own environment (its unit's environment file): a policy, an encoder and a token of its own.
NODE_ENVIRONMENT = {"ALLOWED_LICENCES": "CC0-1.0", "MP3_BITRATE": "320", "MAX_ROW_ERROR_RATE": "0.5",
                    "HF_TOKEN": "hf_NodeOwnTokenNodeOwnToken0123", "LOG_LEVEL": "ERROR", "HUGFLOW_METRICS": "false"}


def _as_job_sees_it(monkeypatch: pytest.MonkeyPatch, submitter: Settings) -> Settings:
    """The settings a job's driver reads: its node's environment with the job's runtime env over it, as Ray does."""
    from hugflow_ray.settings import job_environment

    for name, value in {**NODE_ENVIRONMENT, **job_environment(submitter)}.items():
        monkeypatch.setenv(name, value)
    return load_settings()


@pytest.mark.parametrize("policy", ["MIT,Apache-2.0", None], ids=["the submitter's policy", "the default policy"])
def test_a_job_judges_and_converts_with_its_submitters_settings_whatever_its_node_sets(
        monkeypatch: pytest.MonkeyPatch, policy: str | None) -> None:
    from hugflow_ray.core.licences import judge
    from hugflow_ray.settings import Scope, scope_of

    submitter = Settings(allowed_licences=policy, mp3_bitrate=128, max_row_error_rate=0.01, log_level="DEBUG",
                         hf_token=CANARY_HF, storage_root=Path("rel/datasets"), hugflow_metrics=True)
    job = _as_job_sees_it(monkeypatch, submitter)
    for licence in ("MIT", "CC0-1.0", "Apache-2.0", "CC-BY-4.0", "CC-BY-NC-4.0", None):
        verdicts = [judge(licence, allowed=side.licence_policy, override=None).allowed for side in (submitter, job)]
        assert verdicts[0] == verdicts[1], licence
    synced = [name for name in Settings.model_fields if scope_of(name) is Scope.SYNC]
    assert "allowed_licences" in synced and "mp3_bitrate" in synced
    for name in synced:
        mine, theirs = getattr(submitter, name), getattr(job, name)
        assert (mine.absolute() if isinstance(mine, Path) else mine) == theirs, name
    assert job.hf_token is not None and job.hf_token.get_secret_value() == NODE_ENVIRONMENT["HF_TOKEN"]


def test_no_credential_and_nothing_of_the_control_plane_travels_with_a_job() -> None:
    from hugflow_ray.settings import Scope, job_environment, scope_of

    secrets = {name: f"secret-{name}-0123456789" for name, field in Settings.model_fields.items()
               if "SecretStr" in str(field.annotation)}
    assert set(secrets) >= {"hf_token", "github_token", "slack_webhook_url", "slack_bot_token", "ray_auth_token"}
    assert all(scope_of(name) is Scope.NODE for name in secrets)
    settings = Settings(**secrets, ray_address="http://u:p@head:8265", slack_channel="#data",
                        github_repository="acme/datasets")  # type: ignore[arg-type]
    variables = job_environment(settings)
    assert not [value for value in secrets.values() if any(value in v for v in variables.values())]
    assert not {"RAY_ADDRESS", "SLACK_CHANNEL", "GITHUB_REPOSITORY", "AUTO_MERGE"} & set(variables)


def test_an_empty_variable_reads_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOWED_LICENCES", "")
    monkeypatch.setenv("SLACK_CHANNEL", "")
    settings = load_settings()
    assert settings.allowed_licences is None and settings.slack_channel is None


def test_a_ray_address_with_credentials_is_never_echoed(tmp_path: Path) -> None:
    """`RAY_ADDRESS=http://user:pass@host:8265`: not in the error, nor in the dashboard link a PR comment carries."""
    import os
    import socket
    import subprocess
    import sys

    from hugflow_ray.drivers.ray_job import RayJobs

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing answers there
    address = f"http://operator:pa55word-canary@127.0.0.1:{port}"
    assert "pa55word" not in RayJobs(Settings(ray_address=address)).dashboard_link("hugflow-x-1")
    request = tmp_path / "x.yaml"
    request.write_text(f"path: {tmp_path / 'data.parquet'}\ndescription: a local split\n")
    env = {**os.environ, "RAY_ADDRESS": address, "STORAGE_ROOT": str(tmp_path / "out")}
    done = subprocess.run([sys.executable, "-m", "hugflow_ray", "submit", str(request)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1 and "did not answer" in done.stderr, done.stderr
    assert "pa55word" not in done.stdout + done.stderr and "Traceback" not in done.stderr


def test_a_status_file_never_holds_a_urls_credentials_or_a_token(tmp_path: Path) -> None:
    from hugflow_ray.copies.status import status_path, write_status
    from hugflow_ray.core.records import DatasetIdentity, DatasetState, DatasetStatus

    identity = DatasetIdentity(name="x", source="https://example.org/x.tar", sha=None, subset=None, split="files",
                               license=None)
    status = DatasetStatus(identity, DatasetState.FAILED, rows_total=0,
                           error=f"https://me:hunter2-canary@example.org/x.tar: HTTP 401 with {CANARY_HF}")
    (tmp_path / ".hugflow").mkdir()
    write_status(tmp_path, status)
    text = status_path(tmp_path).read_text()
    assert "hunter2-canary" not in text and CANARY_HF not in text and "example.org/x.tar: HTTP 401" in text


@pytest.mark.parametrize("budget", ["inf", "1e308", "nan", "-1"])
def test_a_storage_budget_that_is_no_finite_size_is_refused_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, budget: str) -> None:
    monkeypatch.setenv("MAX_STORAGE_GB", budget)
    with pytest.raises(SettingsError, match="MAX_STORAGE_GB"):
        load_settings()
