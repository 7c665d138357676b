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
    example = (Path(__file__).resolve().parents[1] / ".env.example").read_text()
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
    from hugflow_ray.executors.child_process import driver_environment

    for name, value in {"HF_TOKEN": CANARY_HF, "GITHUB_TOKEN": "ghs_x", "GH_TOKEN": "gho_x",
                        "SLACK_WEBHOOK_URL": CANARY_SLACK, "SLACK_BOT_TOKEN": "xoxb-x", "STORAGE_ROOT": "/data",
                        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "oidc"}.items():
        monkeypatch.setenv(name, value)
    env = driver_environment()
    assert env["HF_TOKEN"] == CANARY_HF and env["STORAGE_ROOT"] == "/data"
    assert not {"GITHUB_TOKEN", "GH_TOKEN", "SLACK_WEBHOOK_URL", "SLACK_BOT_TOKEN",
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN"} & set(env)
