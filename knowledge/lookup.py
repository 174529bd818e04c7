"""Finding the stores, cities, products, categories and promotions a member's message names.

Members name things loosely: 南山店 for 深圳南山店, 车厘子 for 智利车厘子, 枕头 for 记忆棉枕头,
包邮周 for 深圳门店包邮周. :class:`Lookup` indexes every name's substrings (2 to
:data:`MAX_GRAM` characters) and, for a message, keeps each record's longest substring that the
message contains. A substring counts only when it is *specific*:

- it is not shared by too many records of the same kind (``礼盒`` names two products of twelve:
  fine; a word in half the promotions is filler), and
- it is not common in the rest of the knowledge (FAQ and policy texts): a brand prefix such as
  ``柚见`` in ``柚见鲜牛奶`` appears across the FAQ, so ``柚见会员日`` does not name the milk.

Words that say "a deal" rather than which one (特价, 限时, 活动, …: :data:`DEAL_WORDS`) and the
stores' and cities' names are masked in promotion titles and in the message before matching:
``车厘子限时特价`` is named by 车厘子, not by 特价, and ``天河店开业三周年`` by 三周年.

Among the records of one kind, those with the longest match win (several → the member gets a
short list). SKUs are matched exactly. Nothing here guesses beyond the knowledge's own names.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from knowledge.loaders.skus import extract_skus
from knowledge.records import Product, Promotion, Store, StoreDirectory

MAX_GRAM: Final = 8
"""Longest substring indexed; longer names still match through their 8-character pieces."""

_MIN_GRAM: Final = 2
_SHARED_SHARE: Final = 0.34
"""A substring in more than this share of a kind's records (and more than two) is not specific."""
_COMMON_IN_TEXTS: Final = 3
"""A short substring found in at least this many other knowledge texts is not specific."""
_CODE_TOKEN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-_.]*[0-9][A-Za-z0-9\-_.]*")
_PAREN: Final = re.compile(r"[（(][^)）]*[)）]")
_NOT_NAME: Final = re.compile(r"[\s\d.,，。:：;；!！?？、（）()\-/]+")

DEAL_WORDS: Final = (
    "限时特价", "特价", "优惠", "活动", "促销", "限时", "限定", "专享", "今日", "今天", "全场",
    "福利", "特惠", "大促", "折扣", "打折", "满减", "秒杀", "门店",
)  # fmt: skip
"""Words in promotion titles that name no particular promotion."""


@dataclass(frozen=True, slots=True)
class Match:
    """A record named in a message: how long the matched text is and what it was."""

    key: str
    length: int
    text: str


def grams(text: str, low: int = _MIN_GRAM, high: int = MAX_GRAM) -> set[str]:
    """Every substring of ``text`` of ``low``..``high`` characters (no spaces or digits inside)."""
    out: set[str] = set()
    for piece in _NOT_NAME.split(text.lower()):
        for size in range(low, min(high, len(piece)) + 1):
            out.update(piece[i : i + size] for i in range(len(piece) - size + 1))
    return out


class NameIndex:
    """Substrings of records' names → the records' keys, specific substrings only.

    ``masked`` words are cut out of names and messages before matching."""

    def __init__(
        self,
        names: Mapping[str, Sequence[str]],
        common: Counter[str],
        masked: Sequence[str] = (),
    ) -> None:
        self._mask = _masker(masked)
        per_key = {
            key: set().union(*(grams(self._mask(_bare(n))) for n in ns))
            for key, ns in names.items()
        }
        shared = Counter(g for gs in per_key.values() for g in gs)
        limit = max(2, int(_SHARED_SHARE * len(per_key)))
        self._keys: dict[str, set[str]] = {}
        for key, gs in per_key.items():
            for g in gs:
                if shared[g] <= limit and not _common(g, common):
                    self._keys.setdefault(g, set()).add(key)

    def find(self, text: str) -> list[Match]:
        """The best match per key, longest first (ties in key order)."""
        best: dict[str, Match] = {}
        for g in grams(self._mask(text)):
            for key in self._keys.get(g, ()):
                if key not in best or len(g) > best[key].length:
                    best[key] = Match(key, len(g), g)
        return sorted(best.values(), key=lambda m: (-m.length, m.key))


def _masker(words: Sequence[str]) -> Callable[[str], str]:
    if not words:
        return lambda text: text
    pattern = re.compile("|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True)))
    return lambda text: pattern.sub(" ", text)


def _bare(name: str) -> str:
    """A name without its parenthesised notes: ``新春年货礼盒（豪华版）`` → ``新春年货礼盒``."""
    return _PAREN.sub("", name).strip() or name


def _common(gram: str, common: Counter[str]) -> bool:
    # Long substrings are specific however often the FAQ repeats them (a product name).
    return len(gram) <= 3 and common[gram] >= _COMMON_IN_TEXTS


def top(matches: Sequence[Match]) -> list[Match]:
    """The matches sharing the longest length."""
    return [m for m in matches if matches and m.length == matches[0].length]


@dataclass(frozen=True, slots=True)
class Mentions:
    """What a message names. Lists are best first; ``products`` holds only the best-length ties."""

    stores: tuple[Store, ...] = ()
    cities: tuple[str, ...] = ()
    products: tuple[Product, ...] = ()
    product_match: str = ""
    categories: tuple[str, ...] = ()
    promotions: tuple[Promotion, ...] = ()
    promotion_match: str = ""
    skus: tuple[str, ...] = ()


class Lookup:
    """Finds records named in a message; built once per knowledge snapshot."""

    def __init__(
        self,
        directory: StoreDirectory,
        products: Sequence[Product],
        promotions: Sequence[Promotion],
        other_texts: Iterable[str],
    ) -> None:
        common = Counter(g for text in other_texts for g in grams(text, high=3))
        self._directory = directory
        self._products = {p.sku: p for p in products}
        self._promotions = {p.doc_id: p for p in promotions}
        self._product_names = NameIndex({p.sku: (p.name, *p.aliases) for p in products}, common)
        places = [*directory.names(), *directory.cities()]
        self._promotion_names = NameIndex(
            {p.doc_id: (p.title,) for p in promotions}, common, [*DEAL_WORDS, *places]
        )
        self._promotion_products = {
            p.doc_id: self._products_named(p) for p in promotions
        }  # built once: a deals question must not scan every promotion's text
        self._categories = tuple(
            dict.fromkeys(c for c in (*(p.category for p in products),
                                      *(p.category for p in promotions)) if c)
        )  # fmt: skip

    @property
    def categories(self) -> tuple[str, ...]:
        """Every product and promotion category, in catalogue order."""
        return self._categories

    def mentions(self, text: str) -> Mentions:
        """Everything ``text`` names (see the module docstring for how names are matched)."""
        skus = self._skus_in(text)
        by_sku = [self._products[s] for s in skus]
        named = top(self._product_names.find(text)) if not by_sku else []
        products = by_sku or [self._products[m.key] for m in named]
        promos = top(self._promotion_names.find(text))
        return Mentions(
            stores=tuple(self._stores_in(text)),
            cities=tuple(c for c in self._directory.cities() if c in text),
            products=tuple(products),
            product_match=named[0].text if named else "",
            categories=tuple(c for c in self._categories if c in text),
            promotions=tuple(self._promotions[m.key] for m in promos),
            promotion_match=promos[0].text if promos else "",
            skus=skus,
        )

    def _skus_in(self, text: str) -> tuple[str, ...]:
        """Codes of the catalogue in ``text``: any code-like token (``YJ-F-1001``, ``6901234``)
        that is a known SKU, and what :func:`extract_skus` finds."""
        tokens = [t.upper().strip("-_.") for t in _CODE_TOKEN.findall(text)]
        found = [t for t in (*tokens, *extract_skus(text)) if t in self._products]
        return tuple(dict.fromkeys(found))

    def products_of(self, promotion: Promotion) -> tuple[Product, ...]:
        """The products a promotion is about: its SKUs, else the products its text names."""
        found = self._promotion_products.get(promotion.doc_id)
        return found if found is not None else self._products_named(promotion)

    def _products_named(self, promotion: Promotion) -> tuple[Product, ...]:
        by_sku = tuple(self._products[s] for s in promotion.skus if s in self._products)
        if by_sku:
            return by_sku
        matches = top(self._product_names.find(promotion.text))
        return tuple(self._products[m.key] for m in matches)

    def _stores_in(self, text: str) -> list[Store]:
        found: dict[str, int] = {}
        for name, store_id in self._directory.names().items():
            at = text.find(name)
            if len(name) >= 2 and at >= 0 and not _inside_longer(text, name, at):
                found[store_id] = min(found.get(store_id, at), at)
        ordered = sorted(found, key=lambda sid: found[sid])
        return [s for sid in ordered if (s := self._directory.get(sid)) is not None]


def _inside_longer(text: str, name: str, at: int) -> bool:
    """``天河`` inside ``天河路`` is a street, not the store: a bare short name followed by a
    CJK character other than 店 is not a store mention."""
    end = at + len(name)
    if name.endswith("店") or end >= len(text):
        return False
    return "\u4e00" <= text[end] <= "\u9fff" and text[end] not in "的有在和呢吗么"
