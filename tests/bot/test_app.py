"""The composition root's runtime helpers."""

from __future__ import annotations

import gc

from bot.app import App


async def test_settle_moves_the_startup_heap_out_of_full_collections(app: App) -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        app.settle()
        frozen = gc.get_freeze_count()
        # The models, dictionaries and the knowledge snapshot are now permanent...
        assert frozen > 10_000
        # ...so a full collection no longer walks them, and the app still answers.
        gc.collect()
        assert gc.get_freeze_count() == frozen
        assert "会员日" in await app.preview_answer("会员日是哪天？")
    finally:
        gc.unfreeze()
