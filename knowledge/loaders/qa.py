"""Question-and-answer chunks: the draft for one pair, and a QA table row as a piece.

A QA row is ``text = "问：…\\n答：…"``, indexed by the question and its variants (split at ``|``,
``||``, ``；`` or line ends). A row without a question or an answer is skipped; :func:`qa_gap`
says why, for the warning that names it. The row's metadata
columns become its own metadata layer; a SKU column alone fills ``skus`` (what the exact-match
path reads) without giving the row a layer of its own.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Final

from knowledge.loaders.parsed import Piece
from knowledge.loaders.rows import TableRow, cell_text, read_meta
from knowledge.loaders.scope import LoadContext
from knowledge.metadata import RawValue, parse_skus
from knowledge.types import ChunkDraft

_VARIANT_SPLIT: Final = re.compile(r"\|\|?|\n|；")
_ROW_META: Final = ("kind", "stores", "valid_from", "valid_to", "tags", "title")


def qa_draft(
    question: str,
    answer: str,
    *,
    heading: str = "",
    variants: tuple[str, ...] = (),
    skus: tuple[str, ...] = (),
) -> ChunkDraft:
    """The chunk for one question and its answer (Markdown sections and table rows)."""
    return ChunkDraft(
        text=f"问：{question}\n答：{answer}",
        index_texts=(question, *variants),
        answer=answer,
        heading=heading,
        skus=skus,
    )


def qa_piece(row: TableRow, ctx: LoadContext) -> Piece | None:
    """The piece for a QA row, or None when it lacks a question or an answer."""
    question, answer = cell_text(row.raw("question")), cell_text(row.raw("answer"))
    if not question or not answer:
        return None
    skus = row_skus(row)
    variants = _variants(row.raw("variants"), question)
    draft = qa_draft(question, answer, heading=question, variants=variants, skus=skus)
    layer = read_meta(row, ctx, _ROW_META)
    meta = None if layer.is_empty() else replace(layer, skus=skus or None)
    return Piece(draft, meta, row.where)


def qa_gap(row: TableRow) -> str:
    """Why a row gives no QA pair: ``"no answer"``, ``"no question"`` or both."""
    missing = [f"no {f}" for f in ("question", "answer") if not cell_text(row.raw(f))]
    return " and ".join(missing) or "nothing"


def row_skus(row: TableRow) -> tuple[str, ...]:
    """The SKUs of the row's SKU column (upper-cased), or ()."""
    value = row.raw("skus")
    return () if value is None else parse_skus(value)


def _variants(value: RawValue, question: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = (
        [cell_text(v) for v in value]
        if isinstance(value, list | tuple)
        else _VARIANT_SPLIT.split(cell_text(value))
    )
    cleaned = (v.strip() for v in items)
    return tuple(dict.fromkeys(v for v in cleaned if v and v != question))
