"""The retail skills: answers computed from records, the same offline, as LLM tools and on every
channel.

Each skill reads the :class:`~knowledge.catalogue.Catalogue` as seen from one store at one time
(:class:`Desk`) and returns a :class:`Finding`: the reply text and the records it quotes. Rules
(DESIGN.md §4): a promotion is shown only while valid and only for its stores; one not started yet
appears only as 即将开始 with its start date; an ended one only to say it ended. Prices, dates and
conditions are the records' own text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Final

from bot.retail.wording import (
    day_text,
    join_names,
    numbered,
    promo_body,
    until_text,
    window_text,
)
from knowledge.catalogue import Catalogue
from knowledge.records import Product, Promotion, Store
from knowledge.types import Citation

UPCOMING: Final = timedelta(days=30)
"""Promotions starting within this are mentioned as 即将开始 in a list of deals."""
MAX_LIST: Final = 8
"""Longest list of deals, products or stores in one reply (the rest are counted)."""

_PROMO_PRICE: Final = re.compile(
    r"(?:特价|现价|活动价|到手价|秒杀价|会员价|惊喜价|仅需|只要|优惠价)\s*[:：]?\s*[¥￥]?\s*"
    r"(\d+(?:\.\d+)?)\s*元"
)

ATTRIBUTES: Final = {
    "hours": "营业时间",
    "address": "地址",
    "phone": "电话",
    "parking": "停车",
}
"""Store fields a member asks about, and how the reply names them."""


@dataclass(frozen=True, slots=True)
class Finding:
    """A skill's reply and the records it quotes (for the source line and citations)."""

    text: str
    citations: tuple[Citation, ...] = ()
    facts: tuple[str, ...] = field(default=(), repr=False)
    """The record texts the reply may quote: an LLM's wording is checked against them."""


@dataclass(frozen=True, slots=True)
class Topic:
    """What a question about deals narrows to (all empty: every deal)."""

    products: tuple[Product, ...] = ()
    categories: tuple[str, ...] = ()
    mechanic: re.Pattern[str] | None = None
    label: str = ""

    @property
    def empty(self) -> bool:
        return not (self.products or self.categories or self.mechanic)


class Desk:
    """The records as seen from ``store_id`` at ``now``; the skills' one home."""

    def __init__(
        self, catalogue: Catalogue, *, store_id: str | None, now: datetime, tz: tzinfo
    ) -> None:
        self.catalogue = catalogue
        self.store = catalogue.stores.get(store_id)
        self.store_id = store_id
        self.now = now
        self.tz = tz
        self.today = now.astimezone(tz).date()

    # ---- deals -------------------------------------------------------------------------------

    def current(self) -> list[Promotion]:
        """Promotions valid now for the asker's store (all-store ones included)."""
        promos = self.catalogue.promotions
        return [p for p in promos if p.applies_to_store(self.store_id) and p.is_valid_at(self.now)]

    def upcoming(self) -> list[Promotion]:
        """Promotions for the asker's store starting within :data:`UPCOMING`."""
        soon = self.now + UPCOMING
        return [
            p
            for p in self.catalogue.promotions
            if p.applies_to_store(self.store_id)
            and p.valid_from is not None
            and self.now < p.valid_from <= soon
        ]

    def deals(self, topic: Topic | None = None) -> Finding:
        """Every deal on now here (narrowed to ``topic``), then the ones starting soon."""
        topic = topic or Topic()
        current = [p for p in self.current() if self.relates(p, topic)]
        upcoming = [p for p in self.upcoming() if self.relates(p, topic)]
        if not current and not topic.empty:
            head = f"暂时没有{topic.label}相关的优惠活动。"
            return self._with_head(head, self.deals())
        lines = [self.deal_line(p) for p in current[:MAX_LIST]]
        if len(current) > MAX_LIST:
            lines.append(f"另有{len(current) - MAX_LIST}项活动，可问我具体商品的优惠。")
        parts = [self._deals_head(topic, bool(current)), numbered(lines)] if lines else []
        if not lines:
            parts = [f"{self._where()}目前没有进行中的优惠活动。"]
        if upcoming:
            soon = "；".join(f"{p.title}（{self.day(p.valid_from)}开始）" for p in upcoming[:3])
            parts.append(f"即将开始：{soon}")
        return Finding(
            "\n".join(parts), _cite([*current, *upcoming]), _facts([*current, *upcoming])
        )

    def deal_line(self, promo: Promotion) -> str:
        """``冬日鲜享周：全场生鲜满88减15…（至12月12日）``."""
        return f"{promo.title}：{promo_body(promo)}（{until_text(promo, self.tz, self.now)}）"

    def relates(self, promo: Promotion, topic: Topic) -> bool:
        """True when ``promo`` is about the topic's products, categories or mechanic."""
        if topic.empty:
            return True
        named = self.catalogue.lookup.products_of(promo)
        if topic.products and any(p.sku in {n.sku for n in named} for p in topic.products):
            return True
        cats = {promo.category, *(p.category for p in named)}
        if any(c in cats or c in promo.text for c in topic.categories):
            return True
        return topic.mechanic is not None and bool(topic.mechanic.search(promo.text))

    def _deals_head(self, topic: Topic, found: bool) -> str:
        what = f"{topic.label}相关的" if not topic.empty and topic.label else ""
        return f"{self._where()}现在{what}优惠活动（{self.day(self.now)}）："

    def _with_head(self, head: str, rest: Finding) -> Finding:
        return Finding(f"{head}\n{rest.text}", rest.citations, rest.facts)

    # ---- promotion status -------------------------------------------------------------------

    def status(self, promos: Sequence[Promotion], asked: Sequence[Store] = ()) -> Finding:
        """For each promotion: ended (when; and what is on now), not started (when it starts),
        not for this store (which stores it is for), or running (until when)."""
        lines = [self._status_line(p, asked) for p in promos[:MAX_LIST]]
        text = "\n".join(lines)
        if promos and all(p.has_ended(self.now) for p in promos):
            now_on = [p.title for p in self.current()][:MAX_LIST]
            if now_on:
                text += f"\n现在的优惠有：{join_names(now_on)}。想了解哪个可以直接问我。"
        return Finding(text, _cite(promos), _facts(promos))

    def _status_line(self, promo: Promotion, asked: Sequence[Store]) -> str:
        name = f"「{promo.title}」"
        if promo.has_ended(self.now) and promo.valid_to is not None:
            return f"{name}已结束（{self.day(promo.valid_to)}截止），现在不能再使用了。"
        if promo.has_not_started(self.now) and promo.valid_from is not None:
            window = window_text(promo, self.tz, self.now)
            return f"{name}将于{self.day(promo.valid_from)}开始（{window}）：{promo_body(promo)}"
        outside = [s for s in (asked or self._own()) if not promo.applies_to_store(s.store_id)]
        if promo.stores and (outside or (not asked and self.store is None)):
            return f"{name}仅限{self._store_names(promo.stores)}，{self._not_for(outside)}"
        return f"{name}进行中，{until_text(promo, self.tz, self.now)}：{promo_body(promo, None)}"

    def _not_for(self, outside: Sequence[Store]) -> str:
        if not outside:
            return "其他门店不参加。"
        return f"{join_names([s.name for s in outside])}不参加。"

    def _store_names(self, ids: Iterable[str]) -> str:
        stores = self.catalogue.stores
        return join_names([s.name if (s := stores.get(i)) else i for i in ids])

    def _own(self) -> list[Store]:
        return [self.store] if self.store is not None else []

    # ---- products ---------------------------------------------------------------------------

    def products(self, products: Sequence[Product], *, deal_asked: bool = False) -> Finding:
        """One product: its card with any deal on it now here; several: a short list.

        ``deal_asked``: the member asked about the product's deals, so a card without any says
        there is none now (rather than leaving them to infer it)."""
        if len(products) == 1:
            return self._product(products[0], deal_asked=deal_asked)
        shown = products[:MAX_LIST]
        lines = [self._product_line(p) for p in shown]
        head = f"找到{len(products)}款相关商品："
        tail = ["想了解哪一款？告诉我商品名或货号。"]
        return Finding("\n".join([head, numbered(lines), *tail]), _cite(shown), _facts(shown))

    def _product(self, product: Product, *, deal_asked: bool = False) -> Finding:
        deals = [p for p in self.current() if self.relates(p, Topic(products=(product,)))]
        lines = [f"{self._product_name(product)}：{self._price_line(product, deals)}"]
        lines += [f"优惠：{self.deal_line(p)}" for p in deals[:3]]
        if deal_asked and not deals:
            lines.append(f"{product.name}目前没有优惠活动。")
        later = [p for p in self.upcoming() if self.relates(p, Topic(products=(product,)))]
        lines += [f"即将开始：{p.title}（{self.day(p.valid_from)}开始）" for p in later[:2]]
        records: list[Product | Promotion] = [product, *deals, *later]
        return Finding("\n".join(lines), _cite(records), _facts(records))

    def _price_line(self, product: Product, deals: Sequence[Promotion]) -> str:
        for deal in deals:
            match = _PROMO_PRICE.search(deal.text)
            if match and match.group(1) != product.price.strip():
                return f"现价{match.group(1)}元（原价{product.price_text}）"
        return f"售价{product.price_text}" if product.price else "暂无价格信息"

    def _product_line(self, product: Product) -> str:
        return f"{self._product_name(product)} {product.price_text}"

    @staticmethod
    def _product_name(product: Product) -> str:
        details = "，".join(x for x in (product.sku, product.spec) if x)
        return f"{product.name}（{details}）"

    # ---- stores -----------------------------------------------------------------------------

    def store_info(self, stores: Sequence[Store], attribute: str | None) -> Finding:
        """``attribute`` (hours/address/phone/parking) of each store, or its whole card."""
        lines = [self._store_line(s, attribute) for s in stores[:MAX_LIST]]
        return Finding("\n".join(lines), _cite(stores), _facts(stores))

    def _store_line(self, store: Store, attribute: str | None) -> str:
        if attribute is None:
            return store_card(store)
        value = getattr(store, attribute)
        label = ATTRIBUTES[attribute]
        if value:
            return f"{store.name}{label}：{value}"
        phone = f"，可致电{store.phone}咨询" if store.phone and attribute != "phone" else ""
        return f"{store.name}的{label}信息暂未登记{phone}。"

    def store_list(self, city: str | None = None) -> Finding:
        """The stores (of ``city``), each with its address and hours."""
        stores = list(self.catalogue.stores.in_city(city) if city else self.catalogue.stores.stores)
        if not stores:
            cities = join_names(self.catalogue.stores.cities())
            where = f"，门店在{cities}" if cities else ""
            return Finding(f"{city or ''}暂时没有门店{where}。")
        head = f"{city}有{len(stores)}家门店：" if city else f"我们共有{len(stores)}家门店："
        lines = [_store_summary(s) for s in stores[: MAX_LIST * 2]]
        return Finding("\n".join([head, numbered(lines)]), _cite(stores), _facts(stores))

    # ---- helpers ------------------------------------------------------------------------------

    def day(self, when: datetime | None) -> str:
        """A date as members read it (``12月8日``)."""
        return day_text(when, self.tz, self.today) if when else ""

    def _where(self) -> str:
        return self.store.name if self.store is not None else ""


def store_card(store: Store) -> str:
    """Every known field of a store, one per line."""
    parts = [store.name]
    for attribute, label in ATTRIBUTES.items():
        value = getattr(store, attribute)
        if value:
            parts.append(f"{label}：{value}")
    return "\n".join(parts)


def _store_summary(store: Store) -> str:
    details = "，".join(x for x in (store.address, store.hours) if x)
    return f"{store.name}：{details}" if details else store.name


def _cite(records: Iterable[Product | Promotion | Store]) -> tuple[Citation, ...]:
    unique: dict[str, Citation] = {}
    for record in records:
        if record.citation is not None:
            unique.setdefault(record.citation.chunk_id, record.citation)
    return tuple(unique.values())


def _facts(records: Iterable[Product | Promotion | Store]) -> tuple[str, ...]:
    out: list[str] = []
    for r in records:
        if isinstance(r, Promotion):
            out.append(r.text)
        elif isinstance(r, Product):
            out.append(f"{r.name} {r.sku} {r.spec} {r.price_text} {r.description}")
        else:
            out.append(store_card(r))
    return tuple(out)
