"""In-app keyword search: BM25 (bm25s) over character n-grams plus whole product terms.

Local Chroma has no sparse/BM25 search, so keyword search lives here and is fused with the dense
hits. DESIGN measured on faq-bq that short member questions favour character n-grams over jieba
words (R@5 0.423 vs 0.343), so the base tokens are character unigrams and bigrams (an ASCII run
such as ``sk-1001`` counts as one "character"). On top, jieba with a user dictionary built from the
snapshot's SKUs, product names and titles adds whole-term tokens (``w:<term>``) so a product name
or code matches as a whole rather than as scattered characters.

An index is immutable once built; each snapshot builds its own (build and query times:
``docs/measurements.md``).
"""

from __future__ import annotations

import itertools
import logging
import operator
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import bm25s
import jieba
import numpy as np
import numpy.typing as npt

# An ASCII word (with inner - _ .) is one unit; any other letter/ideograph is a unit on its own.
_UNIT = re.compile(r"[a-z0-9]+(?:[-_.][a-z0-9]+)*|[^\W_]")

# jieba logs "Building prefix dict..." to stderr on first use; that is noise in a bot's logs.
jieba.setLogLevel(logging.WARNING)
# bm25s sets its own logger to DEBUG at import and logs every index build; keep it to warnings.
logging.getLogger("bm25s").setLevel(logging.WARNING)


def normalise(text: str) -> str:
    """NFKC (full-width to half-width) and lower case."""
    return unicodedata.normalize("NFKC", text).lower()


def char_units(text: str) -> list[str]:
    """A text's "characters": CJK characters one by one, ASCII words whole, punctuation dropped."""
    return _UNIT.findall(normalise(text))


def char_ngrams(text: str) -> list[str]:
    """Character unigrams and bigrams of ``text``."""
    units = char_units(text)
    return units + list(map(operator.add, units, units[1:]))  # 2x faster than a comprehension


def bigram_coverage(query: str, text: str) -> float:
    """Fraction of the query's distinct character bigrams (unigrams if it has one unit) in text."""
    q, t = char_units(query), char_units(text)
    if len(q) < 2:
        return 1.0 if q and q[0] in t else 0.0
    qb = {a + b for a, b in itertools.pairwise(q)}
    tb = {a + b for a, b in itertools.pairwise(t)}
    return len(qb & tb) / len(qb)


_dictionary_lock = threading.Lock()
_dictionary: tuple[dict[str, int], int] | None = None


def _base_dictionary() -> tuple[dict[str, int], int]:
    """jieba's word frequencies and their total, loaded once per process: about half a second
    in ``marshal.load``, which holds the GIL throughout (a thread would not keep the event loop
    going, so this happens when a knowledge base opens, before any request)."""
    global _dictionary
    with _dictionary_lock:
        if _dictionary is None:
            loaded = jieba.Tokenizer()
            loaded.initialize()
            _dictionary = (loaded.FREQ, loaded.total)
        return _dictionary


class Segmenter:
    """One jieba tokenizer per knowledge base, with its own user dictionary (the snapshots'
    product terms) on a copy of jieba's dictionary (about 12 ms; the process loads jieba's
    once, :func:`_base_dictionary`).

    The dictionary is ready once :meth:`vocabulary` has run, which every snapshot build does
    in a thread when a knowledge base opens: the first member's question used to load it on the
    event loop, stalling every other request for half a second (or the OA passive-reply budget
    under load). The copy sets jieba's ``FREQ``/``total``/``initialized``, which are what its
    ``initialize`` sets (jieba is pinned).

    Terms are only ever added: a stale term from a deleted document can only shift jieba's word
    boundaries, and :class:`TermTokenizer` emits tokens for the current snapshot's terms only.
    """

    def __init__(self) -> None:
        self._jieba: Any = jieba.Tokenizer()
        self._known: set[str] = set()

    def _load(self) -> None:
        if not self._jieba.initialized:
            freq, total = _base_dictionary()
            self._jieba.FREQ, self._jieba.total = dict(freq), total
            self._jieba.initialized = True

    def vocabulary(self, terms: Iterable[str]) -> TermTokenizer:
        """A tokenizer that recognises ``terms`` whole."""
        self._load()
        wanted = {normalise(t).strip() for t in terms}
        wanted = {t for t in wanted if len(t) >= 2}
        for term in wanted - self._known:
            self._jieba.add_word(term, freq=100_000)
        self._known |= wanted
        return TermTokenizer(self._jieba, frozenset(wanted))


class TermTokenizer:
    """Yields ``w:<term>`` for each whole dictionary term jieba finds in a text."""

    def __init__(self, segmenter: Any, terms: frozenset[str]) -> None:
        self._jieba = segmenter
        self._terms = terms
        # Cheap pre-filter: jieba runs only on texts holding the first two characters of a term.
        self._heads = frozenset(t[:2] for t in terms)

    def words(self, text: str) -> list[str]:
        """jieba's words of ``text`` (normalised), the snapshot's terms whole."""
        return list(self._jieba.lcut(normalise(text), HMM=False))

    def __call__(self, text: str) -> list[str]:
        if not self._terms:
            return []
        norm = normalise(text)
        if self._heads.isdisjoint(map(str.__add__, norm, norm[1:])):
            return []
        words = self._jieba.lcut(norm, HMM=False)
        return ["w:" + w for w in words if w in self._terms]


class KeywordIndex:
    """BM25 over entries (chunk id, index text); several entries may name one chunk."""

    def __init__(
        self, entries: Sequence[tuple[str, str]], terms: TermTokenizer | None = None
    ) -> None:
        self._chunk_ids = [cid for cid, _ in entries]
        self._terms = terms or Segmenter().vocabulary(())
        self._bm25: Any = None
        corpus = [self.tokens(text) for _, text in entries]
        if any(corpus):  # bm25s divides by the mean length: an all-empty corpus has none
            self._bm25 = bm25s.BM25()
            self._bm25.index(corpus, show_progress=False)

    def words(self, text: str) -> list[str]:
        """The words of a text (jieba, with the snapshot's product terms)."""
        return self._terms.words(text)

    def tokens(self, text: str) -> list[str]:
        """Index/query tokens of a text."""
        return char_ngrams(text) + self._terms(text)

    def __len__(self) -> int:
        return len(self._chunk_ids)

    def scores(self, query: str) -> npt.NDArray[np.float32]:
        """BM25 score of every entry for ``query`` (zeros when no query token is indexed)."""
        out = np.zeros(len(self._chunk_ids), dtype=np.float32)
        if self._bm25 is None:
            return out
        ids = self._bm25.get_tokens_ids(self.tokens(query))
        if ids:
            out[:] = self._bm25.get_scores_from_ids(ids)
        return out

    def top(
        self, scores: npt.NDArray[np.float32], n: int, keep: Callable[[str], bool] | None = None
    ) -> dict[str, float]:
        """Up to ``n`` chunks with their best entry score, best first, scores > 0 only.

        ``keep`` filters chunks before the cut, so filtered-out chunks never crowd out valid ones.
        """
        best: dict[str, float] = {}
        for i in np.argsort(-scores, kind="stable"):
            score = float(scores[i])
            if score <= 0 or len(best) >= n:
                break
            cid = self._chunk_ids[i]
            if cid not in best and (keep is None or keep(cid)):
                best[cid] = score
        return best

    def search(self, query: str, n: int) -> dict[str, float]:
        """Up to ``n`` best chunks for ``query`` with their BM25 scores."""
        return self.top(self.scores(query), n)
