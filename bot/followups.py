"""Offline follow-ups: "这个有优惠吗", "能退吗", "那个店几点关门" resolved against the last turns.

No state is kept in memory: the entities a conversation is about are read back from the session's
recent turns (the member's questions and the bot's answers in ``message_log``, within the session
idle window, which the pipeline passes as ``history``) with the catalogue's own name lookup
(:meth:`knowledge.lookup.Lookup.mentions`). So follow-ups survive restarts and work when several
processes serve one session, and a product the bot itself named (its answer card carries the SKU)
counts as much as one the member typed.

Rules (:func:`resolve`):

- The *focus* is found newest exchange first, the member's message before the bot's answer. The
  first message naming a product or promotion decides the thing in focus: exactly one SKU → that
  product; else one promotion → it; else one product → it; several (a list of deals) → nothing,
  since "这个" would be a guess. Stores are found the same way, separately.
- A message is rewritten only when it names no record itself, and either
  - uses a reference word (这个/它/这款/那个… for the thing; 那个店/这家店/那家… for the store)
    and is short (a follow-up, not a new topic), or
  - is elliptical: nothing but a follow-up cue, e.g. "有优惠吗", "多少钱", "能退吗", "几点关门".
- The rewrite names the entity: the product's SKU for price, deal and stock cues (the router then
  answers from the product's record, "HD-1203有优惠吗"); its category for returns ("能退吗" →
  "水果能退吗", answered by the returns FAQ or policy: with the product's name the product's own
  record would outrank the policy), and the answer then says which product it is about; its name
  for anything else ("这个能放几天"); the promotion's title; the store's name.
- "那个，" / "这个，" opening a message is a hesitation, not a reference.

An unrelated new question ("会员日是哪天") has no reference word and is no bare cue: unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from bot.answer import Turn
from knowledge.catalogue import Catalogue
from knowledge.lookup import Mentions
from knowledge.records import Product, Promotion, Store

MAX_FOLLOW_UP: Final = 14
"""A message with a reference word is a follow-up only up to this many characters (without it)."""

STORE_REF: Final = re.compile(r"(?:那|这|该)(?:个|家)?(?:门)?店|那家|这家")
THING_REF: Final = re.compile(
    r"(?:这|那)(?:个|款|种|件|样)(?:商品|东西|活动|优惠|产品)?(?![月周星季年])|该(?:商品|活动)|它"
)
_FILLER: Final = r"(?:那|那么|请问|现在|目前|还|也|的|呢|呀|啊)*"
RETAIL_CUE: Final = re.compile(
    _FILLER + r"(?:(?:有没有|有)?(?:优惠|活动|折扣|特价|促销|打折|便宜点?)(?:吗|么|没有?|嘛)?"
    r"|打折吗|(?:多少钱|多钱|什么价|啥价|价格(?:是)?(?:多少)?|怎么卖|卖多少|贵吗|几块钱?)"
    r"|(?:有货|有没有货|还有吗|有卖吗|卖吗)(?:吗)?)" + _FILLER
)
"""Cues the product's record answers (price, deals, stock): rewritten with the SKU."""
RETURNS_CUE: Final = re.compile(
    _FILLER + r"(?:(?:能|可以|可不可以|能不能|支持)?"
    r"(?:退|退货|退款|换|换货|退换|无理由退货?)(?:吗|么|货吗)?|怎么(?:退|退货|换货|退款))" + _FILLER
)
"""Cues the returns policy answers: rewritten with the product's category (水果能退吗)."""
CARE_CUE: Final = re.compile(
    _FILLER + r"(?:怎么(?:保存|吃|用)|保质期(?:多久|几天)?|能放几天|要冷藏吗|过敏(?:吗)?)" + _FILLER
)
"""Cues the product's own description may answer: rewritten with the product's name."""
PROMOTION_CUE: Final = re.compile(
    _FILLER + r"(?:到哪天|到几号|到什么时候|什么时候结束|什么时候开始|还能用吗|还有吗|还有效吗"
    r"|截止到?哪天|哪些店(?:能|可以)?(?:用|参加)|能参加吗|可以参加吗)" + _FILLER
)
STORE_CUE: Final = re.compile(
    _FILLER + r"(?:(?:几点|什么时候)?(?:开门|关门|营业|打烊)(?:吗)?|营业时间(?:是)?(?:几点|多少)?"
    r"|在哪(?:里|儿)?|地址(?:是)?(?:哪|多少|在哪)?|怎么(?:走|去)|电话(?:是)?(?:多少)?"
    r"|(?:能|可以|好)?停车(?:吗|收费吗|方便吗)?)" + _FILLER
)
_PUNCT: Final = re.compile(r"[\s,，.。!！?？~～、:：;；…]+")
_HESITATION: Final = re.compile(r"^(?:那个|这个|嗯|呃)[\s,，、…]+")
""""那个，会员日是哪天": a hesitation, not a reference."""


@dataclass(frozen=True, slots=True)
class Focus:
    """What the recent conversation is about (each None when unknown or ambiguous)."""

    product: Product | None = None
    promotion: Promotion | None = None
    store: Store | None = None


@dataclass(frozen=True, slots=True)
class FollowUp:
    """A rewritten follow-up: the question to answer and the entity it was resolved to."""

    question: str
    about: str


def resolve(question: str, history: Sequence[Turn], catalogue: Catalogue) -> FollowUp | None:
    """``question`` rewritten to name what the conversation is about, or None (see module doc)."""
    if not history or _names_anything(catalogue.lookup.mentions(question)):
        return None
    bare = _PUNCT.sub("", _HESITATION.sub("", question.strip()))
    store_ref = STORE_REF.search(bare)
    if store_ref is not None or STORE_CUE.fullmatch(bare):
        store = focus(history, catalogue).store
        return _store_follow_up(bare, store_ref, store)
    thing_ref = THING_REF.search(bare)
    rest = THING_REF.sub("", bare, count=1) if thing_ref else bare
    if thing_ref is None and not _elliptical(rest):
        return None
    if thing_ref is not None and len(rest) > MAX_FOLLOW_UP:
        return None
    found = focus(history, catalogue)
    if found.product is not None:
        product = found.product
        if RETAIL_CUE.fullmatch(rest):
            return FollowUp(_named(bare, thing_ref, product.sku), product.name)
        if RETURNS_CUE.fullmatch(rest) and product.category:
            # Asked by its name, the product's own record would outrank the policy that answers.
            return FollowUp(_named(bare, thing_ref, product.category), product.name)
        return FollowUp(_named(bare, thing_ref, product.name), product.name)
    if found.promotion is not None:
        title = found.promotion.title
        return FollowUp(_named(bare, thing_ref, title), title)
    return None


def focus(history: Sequence[Turn], catalogue: Catalogue) -> Focus:
    """The product or promotion, and the store, the newest turns name (see the module doc)."""
    thing: Product | Promotion | None = None
    thing_decided = store_decided = False
    store: Store | None = None
    for turn in _newest_first(history):
        m = catalogue.lookup.mentions(turn.text)
        if not thing_decided and (m.products or m.promotions):
            thing, thing_decided = _thing(turn.text, m, catalogue), True
        if not store_decided and m.stores:
            store, store_decided = (m.stores[0] if len(m.stores) == 1 else None), True
        if thing_decided and store_decided:
            break
    return Focus(
        product=thing if isinstance(thing, Product) else None,
        promotion=thing if isinstance(thing, Promotion) else None,
        store=store,
    )


def _newest_first(history: Sequence[Turn]) -> list[Turn]:
    """Exchanges newest first, each as the member's message then the bot's answer."""
    exchanges: list[list[Turn]] = []
    for turn in history:
        if turn.role == "user" or not exchanges:
            exchanges.append([turn])
        else:
            exchanges[-1].append(turn)
    return [turn for exchange in reversed(exchanges) for turn in exchange]


def _thing(text: str, m: Mentions, catalogue: Catalogue) -> Product | Promotion | None:
    """The one product or promotion ``text`` is about; None for a list (several named in full:
    the lookup itself keeps only the longest match, so a list would look like one)."""
    if m.skus:
        return m.products[0] if len(m.skus) == 1 and len(m.products) == 1 else None
    titles = [p for p in catalogue.promotions if p.title in text]
    if titles or m.promotions:
        return _one(titles or m.promotions)
    names = [p for p in catalogue.products if p.name in text]
    return _one(names or m.products)


def _one(found: Sequence[Product] | Sequence[Promotion]) -> Product | Promotion | None:
    return found[0] if len(found) == 1 else None


def _names_anything(m: Mentions) -> bool:
    return bool(m.products or m.promotions or m.stores or m.skus or m.cities or m.categories)


def _elliptical(text: str) -> bool:
    cues = (RETAIL_CUE, RETURNS_CUE, CARE_CUE, PROMOTION_CUE)
    return any(cue.fullmatch(text) for cue in cues)


def _store_follow_up(bare: str, ref: re.Match[str] | None, store: Store | None) -> FollowUp | None:
    if store is None:
        return None
    if ref is not None and len(bare) - len(ref.group()) > MAX_FOLLOW_UP:
        return None
    return FollowUp(_named(bare, ref, store.name), store.name)


def _named(bare: str, ref: re.Match[str] | None, name: str) -> str:
    """``bare`` with the reference replaced by ``name``, or ``name`` in front of it."""
    if ref is None:
        return f"{name}{bare}"
    return f"{bare[: ref.start()]}{name}{bare[ref.end() :]}"
