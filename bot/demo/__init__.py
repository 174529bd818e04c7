"""The demo brand: 禾町生活超市 (Heting Life Mart), an invented grocery and lifestyle chain.

Four stores (Shanghai Xuhui and Pudong, Hangzhou Xihu, Suzhou Gusu), with a FAQ table
(``faq.csv``), the store directory (``stores.csv``: address, hours, phone, parking), a product
table (``products.csv``, SKUs ``HD-1001`` …), a store FAQ (``stores.md``), two policies
(``membership.md``, ``returns-policy.md``), one Markdown file per larger promotion and a
promotions spreadsheet (``promotions/promotions.csv``, one promotion per row with its dates and
stores) under ``promotions/``. Everything is invented; no real brand is meant.

How the demo stays current. The files are written as of 2026-11-25
(:data:`bot.demo.dates.REFERENCE_DATE`). On that day one promotion has expired (秋季粮油节,
October 2026), one has not started (禾町十周年店庆, from 2026-12-18), two are store-only (徐汇店,
西湖店) and the rest run until 2027-06-30 or later, so the plain files answer sensibly for months.
After that, :func:`write_current_demo` writes a copy with every date moved forward by whole months
(front matter and the dates quoted in the text alike), which keeps each promotion's status —
expired, current, future — for any day of the current month. Moving dates is honest for a demo
whose promotions are invented; it never touches a real brand's knowledge.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from bot.demo.dates import REFERENCE_DATE, months_since_reference, shift_text
from bot.settings import Settings

__all__ = [
    "DEMO_BRAND",
    "DEMO_DIR",
    "DEMO_STORES",
    "REFERENCE_DATE",
    "SAMPLE_QUESTIONS",
    "demo_files",
    "demo_settings",
    "write_current_demo",
]

DEMO_DIR: Path = Path(__file__).resolve().parent
"""The folder holding the demo brand's knowledge files."""

DEMO_BRAND = "禾町生活超市"
"""The demo brand's name: ``siyu demo`` shows it to members unless ``SIYU_BRAND_NAME`` is set."""

DEMO_STORES: dict[str, str] = {
    "sh-xuhui": "上海徐汇店",
    "sh-pudong": "上海浦东店",
    "hz-xihu": "杭州西湖店",
    "sz-gusu": "苏州姑苏店",
}
"""Store id → store name, as used in the promotions' ``store_id`` front matter."""

SAMPLE_QUESTIONS: list[str] = [
    "积分怎么算？",
    "徐汇店在哪里？几点关门？",
    "HD-1105 多少钱？",
    "生鲜有满减活动吗？",
    "鲜奶月卡多少钱？",
    "买的东西几天内可以退？",
    "配送费怎么算？",
    "停车免费吗？",
    "礼品卡余额怎么查？",
    "对坚果过敏，哪些面包不能吃？",
]
"""Questions the demo answers well, printed by ``make demo``; the first few are the chat page's
question chips unless ``SIYU_WEB_SUGGESTIONS`` is set."""

CHIPS = 6
"""How many sample questions the chat page offers as chips."""

_SUFFIXES = frozenset({".md", ".csv"})


def demo_settings(settings: Settings) -> Settings:
    """``settings`` as the demo brand: its name and sample questions, except where the user set
    ``SIYU_BRAND_NAME`` / ``SIYU_WEB_SUGGESTIONS`` (or passed them) explicitly."""
    update: dict[str, object] = {}
    if "brand" not in settings.bot.model_fields_set:
        update["bot"] = settings.bot.model_copy(update={"brand": DEMO_BRAND})
    if "suggestions" not in settings.web.model_fields_set:
        chips = tuple(SAMPLE_QUESTIONS[:CHIPS])
        update["web"] = settings.web.model_copy(update={"suggestions": chips})
    return settings.model_copy(update=update)


def demo_files() -> list[Path]:
    """Every demo knowledge file, ordered by its path relative to :data:`DEMO_DIR`."""
    files = (p for p in DEMO_DIR.rglob("*") if p.is_file() and p.suffix in _SUFFIXES)
    return sorted(files, key=lambda p: p.relative_to(DEMO_DIR).as_posix())


def write_current_demo(target: Path, today: date) -> list[Path]:
    """Copy the demo into ``target`` with its dates moved to ``today``'s month; return the copies.

    The copies keep the demo's relative paths and file names, so ingesting them replaces the
    documents of an earlier ingest (same document ids) instead of adding duplicates. Before or in
    the reference month the copies are identical to the originals.
    """
    months = months_since_reference(today)
    written: list[Path] = []
    for source in demo_files():
        destination = target / source.relative_to(DEMO_DIR)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(shift_text(source.read_text("utf-8"), months), "utf-8")
        written.append(destination)
    return written
