"""Which retail question a message asks, decided without an LLM.

:func:`route` reads cue words (price, deal, status, store attribute, store list) and the records
the message names (:class:`knowledge.lookup.Mentions`), and returns a :class:`Route` or None for
"not a retail question" (FAQ, policy, chit-chat: retrieval answers those). In order:

1. a product code the catalogue knows → the product (with its deals);
2. a store attribute (hours, parking; address or phone when a store, a city, 店 or 你们 is
   named) → store information, for the named stores, the city's, else the asker's own;
3. how many / which stores, or "X有店吗" for a city → the store list;
4. a named promotion, or a product with a status cue (到哪天, 还能用吗, 什么时候) → its status;
5. a named product with a price, availability or deal cue, or a message that is little more
   than the product's name → the product;
6. a deal cue (活动, 优惠, 特价, 满减, 折 …) → the deals on now, narrowed by the named products,
   categories or a mechanic (满减, 折扣, 买赠, 包邮, 半价).

``strong`` is False only for bare deal questions and store questions that name no store: the
answerer lets a near-exact FAQ match win over those (a brand's own "会员日有什么优惠" entry).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace
from typing import Final

from bot.retail.skills import Topic
from knowledge.catalogue import Catalogue
from knowledge.lookup import Mentions
from knowledge.records import Store

ANY_DEAL: Final = Topic()


class Intent(enum.StrEnum):
    """The retail questions the skills answer."""

    DEALS = "deals"
    STATUS = "status"
    PRODUCT = "product"
    STORE = "store"
    STORES = "stores"


@dataclass(frozen=True, slots=True)
class Route:
    """A retail question: what is asked and about which records."""

    intent: Intent
    mentions: Mentions
    strong: bool = True
    attribute: str | None = None
    stores: tuple[Store, ...] = ()
    city: str | None = None
    topic: Topic = ANY_DEAL
    deal_asked: bool = False
    """A product question that asks about its deals ("HD-1203有优惠吗"): the answer says so
    when there are none."""


def _cues(*words: str) -> re.Pattern[str]:
    return re.compile("|".join(words))


PRICE: Final = _cues(
    r"多少钱", r"多钱", r"价格", r"价钱", r"什么价", r"啥价", r"几块", r"几元", r"售价",
    r"怎么卖", r"卖多少", r"贵不贵", r"贵吗", r"单价", r"报价", r"价位",
)  # fmt: skip
AVAILABLE: Final = _cues(r"有卖", r"卖吗", r"有没有卖", r"有货", r"有没有货", r"还有吗", r"买得到")
DEAL: Final = _cues(
    r"活动", r"优惠", r"促销", r"特价", r"折扣", r"打折", r"[几打]折", r"满减", r"福利",
    r"便宜", r"划算", r"减价", r"让利", r"秒杀", r"团购", r"券", r"买一送一", r"买赠", r"赠品",
    r"送什么", r"促销", r"降价了?吗", r"特惠", r"折上折", r"半价", r"包邮", r"羊毛", r"好价",
)  # fmt: skip
STATUS: Final = _cues(
    r"还能用", r"还可以用", r"还能参加", r"还有吗", r"还有没有", r"还在吗", r"还有效", r"有效期",
    r"结束", r"过期", r"到哪天", r"到几号", r"到什么时候", r"到啥时候", r"截止", r"截至",
    r"什么时候", r"啥时候", r"哪天", r"几号", r"多久", r"开始了吗", r"能参加", r"可以参加",
    r"能用吗", r"适用", r"有吗", r"参加吗", r"可以用吗", r"能享受", r"可以享受",
)  # fmt: skip
HOURS: Final = _cues(
    r"营业", r"开门", r"关门", r"打烊", r"几点开", r"几点关", r"到几点", r"几点到几点",
    r"上班时间", r"开到",
)  # fmt: skip
PARKING: Final = _cues(r"停车", r"车位", r"泊车")
ADDRESS: Final = _cues(
    r"地址", r"在哪", r"在什么地方", r"位置", r"怎么走", r"怎么去", r"哪里", r"定位"
)
PHONE: Final = _cues(r"电话", r"联系", r"号码", r"座机")
ASK_FOR: Final = _cues(r"^有没有", r"^有.{1,10}吗", r"卖不卖", r"^想买", r"^我要买", r"^买")
"""A product named with these is asked for (有没有苹果, 想买牛排)."""
WHICH: Final = _cues(r"有哪些", r"有什么", r"有啥", r"都有", r"哪几种", r"什么牌子")
"""A category named with these asks for its products (乳品有哪些)."""
STORE_WORD: Final = _cues(r"店", r"你们", r"贵司", r"超市", r"门市")
STORE_LIST: Final = _cues(
    r"几家", r"多少家", r"哪些(?:门)?店", r"哪几家", r"门店列表", r"所有门店", r"有哪些门店",
    r"分店", r"连锁", r"附近.*店",
)  # fmt: skip
CITY_STORE: Final = _cues(r"有(?:没有)?(?:门)?店", r"有分店", r"开店", r"开了店")
MECHANICS: Final[tuple[tuple[re.Pattern[str], re.Pattern[str], str], ...]] = (
    (_cues(r"满减"), re.compile(r"满\s*\d+(?:\.\d+)?\s*元?\s*减"), "满减"),
    (_cues(r"[几0-9一二三四五六七八九]折"), re.compile(r"\d+(?:\.\d+)?\s*折"), "打折"),
    (
        _cues(r"买赠", r"买.送.", r"赠品", r"送什么", r"赠送"),
        re.compile(r"买.{1,3}[送赠]|赠送|加赠|[送赠][一二两1-9]|满.{1,8}送"),
        "买赠",
    ),
    (_cues(r"包邮", r"运费", r"配送费"), re.compile(r"包邮|免运费|免配送费"), "包邮"),
    (_cues(r"半价"), re.compile(r"半价"), "半价"),
)
"""(cue in the question, pattern in a promotion's text, label) for deal mechanics."""


def route(question: str, catalogue: Catalogue) -> Route | None:
    """The retail question ``question`` asks, or None (see the module docstring)."""
    text = question.strip()
    m = catalogue.lookup.mentions(text)
    if m.skus:
        return Route(Intent.PRODUCT, m, deal_asked=bool(DEAL.search(text)))
    store = _store_route(text, m, catalogue)
    if store is not None:
        return store
    if m.promotions and (STATUS.search(text) or len(m.promotion_match) >= 3):
        return Route(Intent.STATUS, m, stores=_asked_stores(m, catalogue, text))
    if m.stores and DEAL.search(text) and STATUS.search(text):
        return _store_deals_elsewhere(m, catalogue)
    if m.products and STATUS.search(text) and DEAL.search(text):
        return Route(Intent.STATUS, m)
    if m.products and _asks_product(text, m):
        asked = bool(DEAL.search(text))
        return Route(Intent.PRODUCT, _with_category_products(m, catalogue), deal_asked=asked)
    if m.categories and (PRICE.search(text) or AVAILABLE.search(text) or WHICH.search(text)):
        return Route(Intent.PRODUCT, _with_category_products(m, catalogue))
    if DEAL.search(text):
        topic = _topic(text, m)
        return Route(Intent.DEALS, m, strong=not topic.empty, stores=m.stores, topic=topic)
    return None


def _asks_product(text: str, m: Mentions) -> bool:
    if PRICE.search(text) or AVAILABLE.search(text) or DEAL.search(text) or ASK_FOR.search(text):
        return True
    bare = re.sub(r"[\s，。,.!！?？吗呢呀啊的]+", "", text)
    return len(m.product_match) * 4 >= len(bare) * 3  # little more than the name: "牛排"


def _store_route(text: str, m: Mentions, catalogue: Catalogue) -> Route | None:
    if not catalogue.stores:
        return None
    attribute = _attribute(text, m)
    if attribute is not None:
        stores = _named_stores(m, catalogue, text)
        return Route(Intent.STORE, m, strong=bool(stores), attribute=attribute, stores=stores)
    city = m.cities[0] if m.cities else None
    if STORE_LIST.search(text) or (city and CITY_STORE.search(text) and not m.stores):
        return Route(Intent.STORES, m, city=city)
    if m.stores and not (m.promotions or m.products or DEAL.search(text)):
        return Route(Intent.STORE, m, stores=m.stores)
    return None


def _attribute(text: str, m: Mentions) -> str | None:
    named = bool(m.stores or m.cities) or bool(STORE_WORD.search(text))
    if PARKING.search(text):
        return "parking"
    hours = HOURS.search(text) or (named and "几点" in text)
    if hours and (named or not PRICE.search(text)) and "送" not in text:
        return "hours"
    if ADDRESS.search(text) and named:
        return "address"
    if PHONE.search(text) and named:
        return "phone"
    return None


def _named_stores(m: Mentions, catalogue: Catalogue, text: str) -> tuple[Store, ...]:
    if m.stores:
        return m.stores
    for city in m.cities:
        if re.search(f"{city}.{{0,3}}店", text):
            return tuple(catalogue.stores.in_city(city))
    return ()


def _asked_stores(m: Mentions, catalogue: Catalogue, text: str) -> tuple[Store, ...]:
    """Stores a status question asks about: named ones that are not part of the promotion's own
    title (天河店 in 天河店开业三周年), or a city's stores (佛山店)."""
    titles = " ".join(p.title for p in m.promotions)
    named = [s for s in m.stores if not any(n in titles for n in (s.name, *s.short_names))]
    if named:
        return tuple(named)
    cities = replace(m, cities=tuple(c for c in m.cities if c not in titles))
    return tuple(s for s in _named_stores(cities, catalogue, text) if s not in m.stores)


def _with_category_products(m: Mentions, catalogue: Catalogue) -> Mentions:
    """ "面包多少钱": when the words that named a product are a category's name, every product
    of that category is meant."""
    category = next((c for c in m.categories if not m.products or m.product_match in c), None)
    if category is None:
        return m
    products = [p for p in catalogue.products if p.category == category]
    return replace(m, products=tuple(dict.fromkeys([*products, *m.products])))


def _store_deals_elsewhere(m: Mentions, catalogue: Catalogue) -> Route:
    """ "天河店的活动南山店能参加吗": the first store's own promotions, asked for the others (or
    the asker's store)."""
    owner = m.stores[0].store_id
    own = tuple(p for p in catalogue.promotions if owner in p.stores)
    if not own:
        return Route(Intent.DEALS, m, stores=m.stores[:1])
    return Route(Intent.STATUS, replace(m, promotions=own), stores=m.stores[1:])


def _topic(text: str, m: Mentions) -> Topic:
    for cue, pattern, label in MECHANICS:
        if cue.search(text):
            return Topic(m.products, m.categories, pattern, label)
    label = (m.products[0].name if m.products else "") or (m.categories[0] if m.categories else "")
    return Topic(m.products, m.categories, None, label)
