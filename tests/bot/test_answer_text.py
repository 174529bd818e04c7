"""What members read: plain text for every channel, one source line, never a file name."""

from __future__ import annotations

from bot.answer import member_text, source_line


def test_markdown_becomes_plain_short_lines() -> None:
    text = (
        "## 积分兑换\n"
        "**会员**可用积分兑换，详见[兑换说明](https://example.com/points)。\n"
        "- 环保袋\n* 保温杯\n+ 帆布包\n\n\n"
        "| 商品 | 所需积分 |\n| --- | ---: |\n| 保温杯 | 1500 |\n| 环保袋 | 500 |\n"
        "活动期间积分兑换不限次数，兑换后的商品不退不换。如有疑问请咨询门店服务台的工作人员，或在小程序里联系我们的在线客服，谢谢配合。"
    )
    assert member_text(text) == (
        "积分兑换\n"
        "会员可用积分兑换，详见兑换说明。\n"
        "· 环保袋\n· 保温杯\n· 帆布包\n\n"
        "商品：保温杯；所需积分：1500\n商品：环保袋；所需积分：500\n"
        "活动期间积分兑换不限次数，兑换后的商品不退不换。\n如有疑问请咨询门店服务台的工作人员，或在小程序里联系我们的在线客服，谢谢配合。"
    )


def test_plain_text_is_left_alone() -> None:
    assert member_text("每月8号是会员日，会员全场9折。") == "每月8号是会员日，会员全场9折。"


def test_one_source_line_names_each_title_once() -> None:
    labels = ["常见问题", "冬季常见问题", "常见问题", ""]
    assert source_line(labels) == "（来源：常见问题、冬季常见问题）"
    assert source_line([]) == ""
