"""Finding product codes (SKUs, barcodes) in text, for the retriever's exact-match path.

The rule is deliberately conservative, because a code found here outranks every other hit:

- **Letter codes**: 1–6 Latin letters, an optional ``-``, at least 3 digits, up to 3 trailing
  letters, and optional ``-XL`` style suffixes: ``SY-1024``, ``A1023``, ``HF-1001-XL``,
  ``sy-1024`` (→ ``SY-1024``). ``iPhone15``, ``MP3``, ``COVID-19``, ``5G`` are not codes (fewer
  than 3 digits, or no leading letter).
- **Barcodes**: a run of exactly 13 digits that is a valid EAN-13 or starts with 690–699 (China's
  GS1 prefixes, common in made-up demo data), or exactly 12 (UPC-A) / 8 (EAN-8) digits with a valid
  check digit; an 8-digit run that reads as a date (``20261101``) is never a code.
- Not codes: phone numbers (``400-820-8820``, ``021-62345678``: digit runs joined by ``-`` are
  skipped as a whole; an 11-digit mobile number has the wrong length), dates (``2026-11-01``,
  ``2026年11月1日``), prices, and anything inside a URL or an e-mail address.

Codes are upper-cased and de-duplicated in order of appearance.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Final

_LETTER_CODE: Final = re.compile(
    r"(?<![A-Za-z0-9_\-.])([A-Za-z]{1,6}-?[0-9]{3,}[A-Za-z]{0,3}(?:-[A-Za-z0-9]{1,6})*)"
    r"(?![A-Za-z0-9_]|-[A-Za-z0-9]|\.[0-9])"
)
_DIGIT_RUN: Final = re.compile(r"(?<![A-Za-z0-9_\-.])([0-9]+)(?![A-Za-z0-9_]|[\-.][0-9])")
_URL_OR_EMAIL: Final = re.compile(r"(?:https?://|www\.)\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.ASCII)


def extract_skus(text: str) -> tuple[str, ...]:
    """Product codes in ``text``, upper-cased, de-duplicated, in order (see the module doc)."""
    text = _URL_OR_EMAIL.sub(" ", text)
    found: list[tuple[int, str]] = [(m.start(), m.group(1)) for m in _LETTER_CODE.finditer(text)]
    found += [(m.start(), m.group(1)) for m in _DIGIT_RUN.finditer(text) if _is_barcode(m[1])]
    return tuple(dict.fromkeys(code.upper() for _, code in sorted(found)))


def _is_barcode(digits: str) -> bool:
    if len(digits) == 13:
        return _check_digit_ok(digits) or "690" <= digits[:3] <= "699"
    if len(digits) == 12:
        return _check_digit_ok(digits)
    if len(digits) == 8:
        return _check_digit_ok(digits) and not _looks_like_date(digits)
    return False


def _check_digit_ok(digits: str) -> bool:
    """GS1 check digit (EAN-13, UPC-A, EAN-8): weights 3,1,3,... from the right, excluding it."""
    body, check = digits[:-1], int(digits[-1])
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == check


def _looks_like_date(digits: str) -> bool:
    try:
        date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return False
    return 1900 <= int(digits[:4]) <= 2100
