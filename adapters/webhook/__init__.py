"""The generic JSON webhook channel: a signed (HMAC-SHA256) JSON contract so that a third-party
bridge (one that carries WeChat group chats, say) feeds the same pipeline and receives its
replies. The contract is written down in :mod:`adapters.webhook.contract`; the signature scheme in
:mod:`adapters.webhook.signing`."""

from adapters.webhook.push import PushError, WebhookPusher
from adapters.webhook.server import create_webhook_app

__all__ = ["PushError", "WebhookPusher", "create_webhook_app"]
