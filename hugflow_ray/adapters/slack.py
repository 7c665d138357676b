"""Slack notifications through ``slack_sdk``: an incoming webhook, or a bot token and a channel.

Optional and best-effort: nothing configured means nothing is sent, and a failing Slack never fails a sync.
"""

from __future__ import annotations

import logging

from slack_sdk import WebClient, WebhookClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from hugflow_ray.settings import Settings

log = logging.getLogger(__name__)

_RETRIES = [ConnectionErrorRetryHandler(max_retry_count=2), RateLimitErrorRetryHandler(max_retry_count=2)]


def escape(text: str) -> str:
    """``text`` with Slack's control characters escaped, so no name in it becomes a mention or a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Slack:
    """Posts plain messages to the configured destination."""

    def __init__(self, settings: Settings) -> None:
        self._webhook: WebhookClient | None = None
        self._client: WebClient | None = None
        self._channel = settings.slack_channel
        if settings.slack_webhook_url is not None:
            self._webhook = WebhookClient(settings.slack_webhook_url.get_secret_value(), timeout=15,
                                          retry_handlers=list(_RETRIES))
        elif settings.slack_bot_token is not None and settings.slack_channel:
            self._client = WebClient(token=settings.slack_bot_token.get_secret_value(),
                                     base_url=settings.slack_api_url, timeout=15, retry_handlers=list(_RETRIES))
        elif settings.slack_bot_token is not None:
            log.warning("SLACK_BOT_TOKEN is set without SLACK_CHANNEL: nothing will be posted to Slack")

    @property
    def configured(self) -> bool:
        return self._webhook is not None or self._client is not None

    def post(self, text: str) -> bool:
        """Send ``text`` (escaped here); False when it could not be delivered (logged, never raised)."""
        text = escape(text)
        try:
            if self._webhook is not None:
                response = self._webhook.send(text=text)
                if response.status_code != 200:
                    log.warning("Slack webhook answered HTTP %d: %s", response.status_code, response.body[:200])
                    return False
                return True
            if self._client is not None:
                self._client.chat_postMessage(channel=self._channel, text=text)
                return True
        except SlackApiError as e:
            log.warning("Slack refused the message: %s", e.response.get("error", "unknown error"))
        except (SlackClientError, OSError) as e:
            log.warning("Slack could not be reached (%s)", type(e).__name__)
        return False
