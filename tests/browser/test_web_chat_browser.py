"""The web chat in a real browser against ``siyu demo``: 1:1 chat, a group room, the store menu,
handing off to a person and back, opting out; each at desktop width and at 390 px (a phone),
where the page must not scroll sideways and the composer must stay in view."""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING

from bot.demo import DEMO_BRAND

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

    from tests.browser.conftest import Pages

BOT = "小域"
BOT_ROWS = ".row.answer, .row.handoff"
FILE_NAME = re.compile(r"[\w-]+\.(?:csv|md|xlsx|pdf|docx|json|txt)\b")


def _expect(target: Locator | Page):  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    return expect(target)


def connected(page: Page) -> None:
    _expect(page.locator("#status")).to_have_attribute("data-state", "open")


def ask(page: Page, text: str) -> Locator:
    """Type ``text`` into the composer, send it, and return the bot's next reply row."""
    before = page.locator(BOT_ROWS).count()
    page.locator("#text").fill(text)
    page.locator("#text").press("Enter")
    return next_bot_row(page, before)


def next_bot_row(page: Page, before: int) -> Locator:
    rows = page.locator(BOT_ROWS)
    _expect(rows).to_have_count(before + 1)
    return rows.nth(before)


def assert_fits(page: Page) -> None:
    """No sideways scrolling; the composer and its send button are on screen."""
    widths = page.evaluate(
        "() => [document.documentElement.scrollWidth, window.innerWidth, window.innerHeight]"
    )
    scroll_width, inner_width, inner_height = widths
    assert scroll_width <= inner_width, f"page overflows sideways: {scroll_width} > {inner_width}"
    for selector in ("#text", "#send"):
        _expect(page.locator(selector)).to_be_visible()
        box = page.locator(selector).bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= inner_width + 0.5, selector
        assert box["y"] + box["height"] <= inner_height + 0.5, selector


def test_one_to_one_answer_cites_once_without_file_names(pages: Pages) -> None:
    page = pages.open()
    connected(page)
    _expect(page).to_have_title(f"{DEMO_BRAND} · 会员客服")
    greeting = page.locator(".row.notice").first
    _expect(greeting).to_contain_text(DEMO_BRAND)
    assert "Siyu" not in page.locator("body").inner_text()
    assert page.locator("#chips .chip").count() >= 4
    assert_fits(page)

    answer = ask(page, "积分怎么算？")
    text = answer.locator(".bubble").inner_text()
    assert "积分" in text
    assert text.count("来源") <= 1, text
    assert not FILE_NAME.search(text), text
    assert page.locator(".cites").count() == 0, "citations are in the text, not a second list"
    assert not FILE_NAME.search(page.locator("#log").inner_text())
    help_text = ask(page, "帮助").inner_text()
    assert DEMO_BRAND in help_text, help_text
    assert "Siyu" not in help_text

    chip = page.locator("#chips .chip").nth(3)
    chip_text = chip.inner_text()
    before = page.locator(BOT_ROWS).count()
    chip.click()
    _expect(page.locator(".row.member.mine").last).to_contain_text(chip_text)
    next_bot_row(page, before)
    assert_fits(page)
    pages.shot(page)


def test_group_room_members_see_each_other_and_the_bot(pages: Pages) -> None:
    room = "门店群" + uuid.uuid4().hex[:4]
    alice, bob = pages.open(f"?room={room}&name=阿花"), pages.open(f"?room={room}&name=阿宝")
    connected(alice)
    connected(bob)
    _expect(alice.locator(".row.notice").last).to_contain_text("阿宝 加入了群聊")
    _expect(alice.locator("#mention")).to_be_visible()

    bob.locator("#text").fill("大家好，有人在吗")
    bob.locator("#text").press("Enter")
    _expect(alice.locator(".row.member").last).to_contain_text("大家好，有人在吗")
    _expect(alice.locator(".row.member .who").last).to_have_text("阿宝")

    answer = ask(alice, f"@{BOT} 停车免费吗？")
    _expect(bob.locator(".row.member").last).to_contain_text("停车免费吗")
    _expect(bob.locator(BOT_ROWS)).to_have_count(1)
    for page in (alice, bob):
        reply = page.locator(BOT_ROWS).last
        _expect(reply.locator(".quote")).to_contain_text("阿花")
        assert "停车" in reply.inner_text()
        assert not FILE_NAME.search(reply.inner_text())
        assert_fits(page)
    assert answer.inner_text() == bob.locator(BOT_ROWS).last.inner_text()
    pages.shot(alice, "alice")
    pages.shot(bob, "bob")


def test_store_picker_is_remembered_and_answers_for_that_store(pages: Pages) -> None:
    page = pages.open()
    connected(page)
    picker = page.locator("#store")
    _expect(picker.locator("option")).to_have_count(5)  # "不指定门店" + the demo's four stores
    picker.select_option("hz-xihu")
    _expect(page.locator(".row.notice").last).to_contain_text("杭州西湖店")

    page.reload()
    connected(page)
    _expect(page.locator("#store")).to_have_value("hz-xihu")
    text = ask(page, "营业到几点？").inner_text()
    assert "杭州西湖店" in text, text
    assert "21:30" in text, text
    assert "徐汇" not in text, f"the answer is for the picked store only: {text}"
    text = ask(page, "几点关门").inner_text()
    assert "杭州西湖店" in text, text
    assert "21:30" in text, text
    assert "徐汇" not in text, f"the answer is for the picked store only: {text}"
    assert_fits(page)
    pages.shot(page)


def test_handoff_offers_the_way_back_to_the_bot(pages: Pages) -> None:
    page = pages.open()
    connected(page)
    bar = page.locator("#handoff")
    _expect(bar).to_be_hidden()

    notice = ask(page, "人工")
    _expect(notice).to_have_class(re.compile(r"\bhandoff\b"))
    said = notice.locator(".bubble").inner_text()
    assert "人工" in said, said
    assert re.search(r"\d|稍候|尽快|回复", said), f"the notice should say when: {said}"
    _expect(bar).to_be_visible()
    _expect(bar.get_by_role("button", name="结束人工")).to_be_visible()
    assert_fits(page)
    pages.shot(page, "handed-off")

    page.reload()  # still handed off after a reload
    connected(page)
    _expect(bar).to_be_visible()

    before = page.locator(BOT_ROWS).count()
    bar.get_by_role("button", name="结束人工").click()
    _expect(page.locator(".row.member.mine").last).to_contain_text("结束人工")
    back = next_bot_row(page, before)
    _expect(back).to_have_class(re.compile(r"\banswer\b"))
    _expect(bar).to_be_hidden()
    assert "积分" in ask(page, "积分怎么算？").inner_text()
    assert_fits(page)
    pages.shot(page, "back")


def test_opt_out_is_confirmed(pages: Pages) -> None:
    page = pages.open()
    connected(page)
    text = ask(page, "退订").inner_text()
    assert "退订" in text, text
    assert_fits(page)
    pages.shot(page)
