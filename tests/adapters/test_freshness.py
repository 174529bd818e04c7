"""The signed-timestamp parser and freshness window every signed channel shares."""

from __future__ import annotations

import pytest

from adapters.freshness import (
    MAX_SKEW_S,
    MalformedTimestamp,
    StaleTimestamp,
    check_fresh,
    fresh_timestamp,
    parse_timestamp,
)

NOW = 1_772_000_000.0


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "²",  # str.isdigit() says yes; int() raises
        "١٧٧٢٠٠٠٠٠٠",  # Arabic-Indic digits: int() would accept them
        "１７７２０００００００",  # full-width digits: int() would accept them too
        "9" * 13,
        "9" * 5000,  # int() of 4,300+ digits raises ValueError
        "-1",
        "+1772000000",
        " 1772000000",
        "1772000000 ",
        "1_772_000_000",
        "1.5",
        "1e9",
        "0x10",
    ],
)
def test_malformed_timestamps_are_refused_by_name(raw: str) -> None:
    with pytest.raises(MalformedTimestamp, match=r"^X-Stamp is "):
        parse_timestamp(raw, name="X-Stamp")


def test_a_timestamp_is_one_to_twelve_ascii_digits() -> None:
    assert parse_timestamp("0") == 0
    assert parse_timestamp("1772000000") == 1_772_000_000
    assert parse_timestamp("9" * 12) == 999_999_999_999


@pytest.mark.parametrize("skew", [0, MAX_SKEW_S, -MAX_SKEW_S, 120.5])
def test_within_the_window(skew: float) -> None:
    check_fresh(int(NOW - skew), NOW)
    assert fresh_timestamp(str(int(NOW - skew)), NOW) == int(NOW - skew)


@pytest.mark.parametrize(
    ("timestamp", "says"), [(int(NOW) - MAX_SKEW_S - 1, "301 s old"), (int(NOW) + 3600, "future")]
)
def test_outside_the_window(timestamp: int, says: str) -> None:
    with pytest.raises(StaleTimestamp, match=says):
        fresh_timestamp(str(timestamp), NOW)
