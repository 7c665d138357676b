"""Secrets never reach a log line, a PR comment, a Slack message or a file.

:func:`redact` removes configured secret values, anything shaped like a token or webhook URL, and the
``user:password@`` of any URL; :func:`shown_url` shows one URL without it;
:class:`RedactingFilter` applies it to every log record (message, arguments and traceback).
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import Iterable

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 6  # shorter "secrets" would blank out ordinary words

_TOKEN_SHAPES = re.compile(
    r"""
      \bhf_[A-Za-z0-9]{16,}                                 # Hugging Face user token
    | \bapi_org_[A-Za-z0-9]{16,}                            # Hugging Face org token
    | https?://hooks\.slack(?:-gov)?\.com/[A-Za-z0-9/_-]+         # Slack incoming webhook
    | \bxox[abposre]-[A-Za-z0-9-]{8,}                       # Slack bot/user/app token
    | \bgh[pousr]_[A-Za-z0-9]{20,}                          # GitHub token
    | \bgithub_pat_[A-Za-z0-9_]{20,}                        # GitHub fine-grained token
    """,
    re.VERBOSE,
)
# The user-info of a URL (``scheme://user:password@host``): a password, or a token passed as a user name.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s'\"]+@")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every secret value, token-shaped string and URL user-info replaced by ``[REDACTED]``."""
    text = _TOKEN_SHAPES.sub(REDACTED, text)
    text = _URL_USERINFO.sub(rf"\g<scheme>{REDACTED}@", text)
    for secret in sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """A handler filter that redacts a record's rendered message and traceback in place."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = list(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.secrets)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        return True


_BASE_RECORD_FACTORY = logging.getLogRecordFactory()


def configure_logging(level: str, secrets: Iterable[str] = ()) -> None:
    """Send log records to stderr, and redact every record as it is created (idempotent).

    Redacting at creation, not only in our handler, matters: a handler some library added to the root logger
    before ours (Ray adds one) would otherwise print the record first, unredacted.
    """
    redactor = RedactingFilter(secrets)

    def redacted_record(*args: object, **kwargs: object) -> logging.LogRecord:
        record = _BASE_RECORD_FACTORY(*args, **kwargs)
        try:
            redactor.filter(record)
        except Exception:  # noqa: BLE001 - a record whose message cannot be rendered fails in the handler as usual
            pass
        return record

    logging.setLogRecordFactory(redacted_record)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_hugflow", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler()
    handler._hugflow = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(redactor)
    root.addHandler(handler)
    root.setLevel(level)


def shown_url(url: str) -> str:
    """``url`` as a message, a link or a file may show it: its ``user:password@`` part (if any) removed."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
