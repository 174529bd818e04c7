"""Proactive sends for the campaigns' delivery worker: one :class:`PlatformSender` over every
configured account, speaking :class:`bot.types.Outbound`.

Routes and their addresses:

- ``kf``: the member's :class:`bot.types.Address` as recorded when they wrote (``account``: a
  SIYU_WECOM_KF name, ``user``: the external_userid, ``chat``: the open_kfid) → ``kf/send_msg``
  with ``msgid`` = the message's key (a repeat is not delivered twice);
- ``oa``: the member's address (``account``: a SIYU_OFFICIAL_ACCOUNTS name, ``user``: the
  openid) → ``message/custom/send``;
- ``staff_task``: ``owner`` (the staff member's userid), ``recipients`` = their customers'
  external userids → ``externalcontact/add_msg_template`` (the owner confirms it in WeCom);
- ``group``: ``robot`` (a SIYU_WECOM_ROBOTS name) → ``webhook/send``;
- ``webhook``: ``bridge`` (a SIYU_WEBHOOKS name with a ``push_url``), ``conversation`` → a signed
  push to the bridge (:class:`adapters.webhook.WebhookPusher`, push id = the message's key, so
  the bridge drops a repeat: the route is idempotent). Its errors are already
  :class:`bot.errors.DeliveryError` (5xx / timeouts retryable, other statuses final).

Platform errors become :class:`bot.errors.DeliveryError`: a closed 48-hour / 5-message window is
``window_closed`` (never retried), API frequency limits ``platform_quota`` (retryable), busy
answers and failed connections ``transport`` (retryable); a timeout or error status on a route
without a caller id is ``unknown`` (not retried: the platform may have delivered it); anything
else ``rejected``. An address naming an
account that is not configured is ``rejected`` too: the message cannot go anywhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal, TypeVar

import aiohttp
from pydantic import SecretStr

from adapters.webhook.config import Bridge
from adapters.webhook.push import WebhookPusher
from adapters.wecom.client import Credentials, TokenCache, WeComClient
from adapters.wecom.config import WeComSettings
from adapters.wecom.errors import (
    APIError,
    BadRequestError,
    RateLimitedError,
    SystemBusyError,
    TransportError,
    WindowClosedError,
)
from adapters.wecom.robot import RobotWebhook
from bot.errors import DeliveryError
from bot.types import Address, Outbound

T = TypeVar("T")
IDEMPOTENT_ROUTES = frozenset({"kf", "webhook"})
"""Routes whose send carries our key (kf ``msgid``, the push id): repeating one cannot deliver
twice."""


@dataclass(frozen=True)
class PlatformSender:
    """Sends :class:`Outbound` messages through the configured accounts' API clients."""

    kf: Mapping[str, WeComClient]
    oa: Mapping[str, WeComClient]
    contact: WeComClient | None
    robots: Mapping[str, RobotWebhook]
    bridges: Mapping[str, WebhookPusher]

    async def send(self, message: Outbound, /) -> str:
        """Deliver ``message``; the platform's id for it (or the key when it returns none)."""
        try:
            return await self._send(message)
        except WindowClosedError as exc:
            raise DeliveryError(str(exc), reason="window_closed", retryable=False) from exc
        except RateLimitedError as exc:
            raise DeliveryError(str(exc), reason="platform_quota", retryable=True) from exc
        except TransportError as exc:
            if exc.maybe_delivered and message.route not in IDEMPOTENT_ROUTES:
                # A timeout on a send without a caller id: it may have arrived; never repeat it.
                raise DeliveryError(str(exc), reason="unknown", retryable=False) from exc
            raise DeliveryError(str(exc), reason="transport", retryable=True) from exc
        except SystemBusyError as exc:
            raise DeliveryError(str(exc), reason="transport", retryable=True) from exc
        except (APIError, BadRequestError) as exc:
            raise DeliveryError(str(exc), reason="rejected", retryable=False) from exc

    async def _send(self, m: Outbound) -> str:
        a = m.address
        if m.route == "kf":
            to = _member(a)
            if to.chat is None:
                raise _unroutable("the kf address lacks its chat (the open_kfid)")
            client = _pick(self.kf, to.account, "kf account")
            answer = await client.kf_send_text(
                touser=to.user,
                open_kfid=to.chat,
                content=m.text,
                msgid=m.key,
            )
            return str(answer.get("msgid") or m.key)
        if m.route == "oa":
            to = _member(a)
            client = _pick(self.oa, to.account, "Official Account")
            await client.custom_send_text(touser=to.user, content=m.text)
            return m.key
        if m.route == "staff_task":
            if self.contact is None:
                raise _unroutable("no WeCom customer-contact account (SIYU_WECOM_CONTACT)")
            answer = await self.contact.add_msg_template(
                sender=_need(a, "owner"), external_userids=m.recipients, content=m.text
            )
            return str(answer.get("msgid") or m.key)
        if m.route == "group":
            robot = _pick(self.robots, a.get("robot"), "group robot")
            await robot.send_text(m.text)
            return m.key
        if m.route == "webhook":
            pusher = _pick(self.bridges, a.get("bridge"), "bridge with a push_url")
            return await pusher.push(_need(a, "conversation"), m.text, message_id=m.key)
        raise _unroutable(f"unknown route {m.route!r}")


def _pick(clients: Mapping[str, T], name: str | None, what: str) -> T:
    client = clients.get(name or "")
    if client is None:
        raise _unroutable(f"no {what} named {name!r} is configured")
    return client


def _member(address: Mapping[str, str]) -> Address:
    """The member's :class:`bot.types.Address` the kf / oa routes carry."""
    try:
        return Address.from_fields(address)
    except ValueError as exc:
        raise _unroutable(str(exc)) from exc


def _need(address: Mapping[str, str], field: str) -> str:
    value = address.get(field)
    if not value:
        raise _unroutable(f"the address lacks {field}")
    return value


def _unroutable(why: str) -> DeliveryError:
    return DeliveryError(why, reason="rejected", retryable=False)


def _creds(kind: Literal["wecom", "oa"], app_id: str, secret: SecretStr) -> Credentials:
    return Credentials(kind, app_id, secret.get_secret_value())


@asynccontextmanager
async def platform_sender(
    wecom: WeComSettings,
    *,
    bridges: Sequence[Bridge] = (),
    tokens: TokenCache | None = None,
) -> AsyncIterator[PlatformSender]:
    """A sender over one HTTP session for every account of ``wecom``, while the block runs; the
    ``bridges`` with a ``push_url`` are the ``webhook`` route's destinations."""
    cache = tokens if tokens is not None else TokenCache()
    api, oa_api = wecom.api_base, wecom.wechat_api_base
    async with aiohttp.ClientSession() as session:

        def client(creds: Credentials, base: str) -> WeComClient:
            return WeComClient(session, creds, base_url=base, tokens=cache)

        contact = wecom.contact
        contact_client = None
        if contact is not None:
            contact_client = client(_creds("wecom", contact.corp_id, contact.secret), api)
        yield PlatformSender(
            kf={a.name: client(_creds("wecom", a.corp_id, a.secret), api) for a in wecom.kf},
            oa={
                a.name: client(_creds("oa", a.app_id, a.secret), oa_api)
                for a in wecom.official_accounts
            },
            contact=contact_client,
            robots={
                r.name: RobotWebhook(session, r.key.get_secret_value(), base_url=api)
                for r in wecom.robots
            },
            bridges={b.name: WebhookPusher(session, b) for b in bridges if b.push_url},
        )
