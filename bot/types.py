"""The values that cross the boundary between adapters and the core, and the words for them.

Adapters translate a platform payload into one frozen :class:`InboundMessage` and render the
:data:`Reply` the pipeline returns. The core never sees XML or JSON from a platform.

Vocabulary, used with these meanings everywhere in the code:

channel
    Where a member's message came from: one configured account of one adapter, written
    ``<adapter>.<account>`` (``kf.shop``, ``oa.main``, ``wecom_app.staff``, ``webhook.bridge``)
    or ``web`` / ``console``. A member is known per channel: :class:`MemberRef` is
    ``(channel, external_id)``.
route
    How a proactive message travels to its recipient (:attr:`Outbound.route`): ``kf``, ``oa``,
    ``staff_task``, ``group``. Chosen by campaigns, delivered by the adapter that owns it. (The
    outbox's column for it is still called ``channel``, a name kept from its first version.)
conversation
    The chat a message belongs to, as its platform names it: the member's 1:1 chat, or the
    group (:attr:`InboundMessage.conversation`).
session_key
    The key of a conversation's history in the message log: one per 1:1 chat, one per member
    inside a group (:attr:`InboundMessage.session_key`). Only the core reads it; nothing parses it.
person
    One human across channels: campaigns join a member's identities (one per channel) into one
    ``person`` (the brand's customer number, a unionid, or ``m<member id>``); caps, opt-out
    and cooldowns apply per person.
address
    Where a member can be reached 1:1 (:class:`Address`: route, account, platform user id, and
    the chat when the route needs one), put on :class:`InboundMessage` by the adapter and
    recorded on arrival with the member's contact window (:mod:`bot.contact`); campaigns send to
    it instead of parsing channels or session keys.
target
    One recipient of one campaign run, unique within the run: ``person:<person>`` or
    ``group:<robot>`` (an outbox row's key).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from knowledge.types import Citation


@dataclass(frozen=True, slots=True)
class MemberRef:
    """Who a member is on one channel: ``(channel, external_id)`` is unique."""

    channel: str
    external_id: str
    display_name: str = ""


@dataclass(frozen=True, slots=True)
class Address:
    """Where a member can be reached 1:1, as the adapter that received their message names it.

    ``route`` is how messages travel (``kf``, ``oa``, ... the names :class:`Outbound` uses),
    ``account`` the configured account's name, ``user`` the platform's id of the member on it
    (kf ``external_userid``, Official Account ``openid``), ``chat`` what else the route needs to
    address the chat (kf: the ``open_kfid``; None when nothing). Recorded on arrival
    (:mod:`bot.contact`) so that nobody parses channel names or session keys back later.
    """

    route: str
    account: str
    user: str
    chat: str | None = None

    def as_fields(self) -> dict[str, str]:
        """The address as plain strings (an outbox row's JSON ``address``)."""
        fields = {"route": self.route, "account": self.account, "user": self.user}
        return fields if self.chat is None else {**fields, "chat": self.chat}

    @classmethod
    def from_fields(cls, fields: Mapping[str, object]) -> Address:
        """The inverse of :meth:`as_fields`; ValueError when a field is missing or not text."""
        values = {name: fields.get(name) for name in ("route", "account", "user")}
        missing = [
            name for name, value in values.items() if not isinstance(value, str) or not value
        ]
        if missing:
            raise ValueError(f"an address without {', '.join(missing)}: {dict(fields)!r}")
        chat = fields.get("chat")
        return cls(str(values["route"]), str(values["account"]), str(values["user"]),
                   chat if isinstance(chat, str) and chat else None)  # fmt: skip


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One message from a member, normalised by an adapter.

    ``id`` is the platform's message id, unique per channel (the dedupe key). ``conversation`` is
    the chat it belongs to: the member's 1:1 chat, or the group. ``store_id`` scopes answers to one
    store when the channel knows it (a store's group, a store's kf account). ``address`` is how
    to reach the sender 1:1 later (None on channels without one: groups, the web chat, bridges).
    """

    id: str
    channel: str
    conversation: str
    sender: MemberRef
    text: str
    received_at: datetime
    is_group: bool = False
    mentioned_bot: bool = False
    store_id: str | None = None
    address: Address | None = None

    @property
    def session_key(self) -> str:
        """One session per 1:1 chat, and one per member inside a group."""
        if self.is_group:
            return f"{self.channel}:{self.conversation}:{self.sender.external_id}"
        return f"{self.channel}:{self.conversation}"


@dataclass(frozen=True, slots=True)
class TextReply:
    """An answer or a command confirmation. ``quote`` names the asker in groups."""

    text: str
    citations: tuple[Citation, ...] = ()
    quote: str | None = None
    answered_by: str = "command"
    """How it was made: "llm", "extractive", "retail", "smalltalk", "command", "not_found" or
    "error" (logged with the reply; ``siyu report`` counts them)."""


@dataclass(frozen=True, slots=True)
class HandoffReply:
    """Tell the member a person takes over; ``summary`` is for the human agent.

    ``complaint`` is True when the bot handed off because it read a complaint (the summary then
    starts with ``【投诉】``); False when the member asked for a person."""

    text: str
    summary: str
    quote: str | None = None
    complaint: bool = False


@dataclass(frozen=True, slots=True)
class NoReply:
    """Say nothing: a duplicate, a group message not addressed to the bot, a human is serving."""

    reason: str = field(default="")


Reply = TextReply | HandoffReply | NoReply


class SessionEnded(Protocol):
    """Told when a human agent closed a member's session on the platform, so the bot answers
    that member again: ``bot.pipeline.Pipeline.human_session_ended`` fits it."""

    async def __call__(self, member: MemberRef, /) -> None: ...


class MessageHandler(Protocol):
    """The one entry point every adapter feeds: ``bot.inbox.Inbox.handle`` fits it (it records
    the message durably, then answers it once with ``bot.pipeline.Pipeline.handle``, which fits
    too). It raises :class:`bot.errors.Unavailable` when the message must be retried later."""

    async def __call__(self, msg: InboundMessage, /) -> Reply: ...


@dataclass(frozen=True, slots=True)
class Outbound:
    """One proactive message for an adapter to deliver (campaigns' delivery worker → adapters).

    ``route`` names how it travels: ``kf`` (address: ``account``, ``external_userid``), ``oa``
    (``account``, ``openid``), ``staff_task`` (``owner``: the staff member who confirms an
    ``add_msg_template`` task for ``recipients``, their external userids) or ``group`` (``robot``).
    ``key`` is unique per message: routes that accept a caller id (kf ``msgid``) pass it so a
    retry after a crash is not delivered twice.
    """

    route: str
    address: dict[str, str]
    text: str
    key: str
    recipients: tuple[str, ...] = ()


class OutboundSender(Protocol):
    """Delivers :class:`Outbound` messages; returns the platform's id for the send.

    Raises :class:`bot.errors.DeliveryError` when the platform refused or could not be reached.
    """

    async def send(self, message: Outbound, /) -> str: ...
