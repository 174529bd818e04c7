"""extract_skus: product codes and barcodes in, phone numbers, dates, prices and URLs out."""

from __future__ import annotations

import pytest

from knowledge.loaders import extract_skus


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("货号SY-1024的吐司", ("SY-1024",)),
        ("请问 a1023 还有货吗", ("A1023",)),
        ("HF-1001-XL 和 HF-1001-XL 一样", ("HF-1001-XL",)),
        ("（SKU：AB123C）", ("AB123C",)),
        ("条码6901234567890", ("6901234567890",)),  # China GS1 prefix, any check digit
        ("UPC 036000291452", ("036000291452",)),  # valid UPC-A check digit
        ("EAN-8 96385074", ("96385074",)),  # valid EAN-8 check digit
        ("先SY-2048后A1023再SY-2048", ("SY-2048", "A1023")),
    ],
)
def test_codes_are_found_upper_cased_in_order(text: str, expected: tuple[str, ...]) -> None:
    assert extract_skus(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "客服电话400-820-8820",
        "座机021-62345678",
        "手机13812345678",
        "活动时间2026-11-01至2026/11/30",
        "日期20261101",  # an 8-digit date, even though it passes no check digit test anyway
        "2026年11月1日 08:00",
        "价格29.9元，满100减20",
        "iPhone15 MP3 COVID-19 5G 30GB H5",
        "网址 https://shop.example.com/item/AB12345 或 www.example.com/SY-1024",
        "邮箱 vip888@example.com",
        "订单号 1234567890123",  # 13 digits, bad check digit, not a 69x barcode
        "版本 V2.0.3 和 3.1415926",
    ],
)
def test_non_codes_are_ignored(text: str) -> None:
    assert extract_skus(text) == ()
