"""HMAC signatures of the generic JSON webhook, both directions.

A message is signed over ``f"{timestamp}.{body}"`` with HMAC-SHA256 and the bridge's shared
secret, sent as two headers::

    X-Siyu-Timestamp: 1764050000            (Unix seconds)
    X-Siyu-Signature: sha256=<64 hex>

The receiver recomputes the signature over the raw body bytes, compares in constant time and
refuses timestamps more than :data:`adapters.freshness.MAX_SKEW_S` (5 minutes) from its clock (a
captured request cannot be replayed later; a replay inside the window is a duplicate message id,
which the pipeline drops).
The timestamp is read by the parser every signed channel shares (:mod:`adapters.freshness`):
a header that is not a timestamp (``²``, full-width digits, 5,000 digits) is
:class:`~adapters.freshness.MalformedTimestamp`, a bad request, never a crash.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping

from adapters.freshness import StaleTimestamp, fresh_timestamp

TIMESTAMP_HEADER = "X-Siyu-Timestamp"
SIGNATURE_HEADER = "X-Siyu-Signature"


class SignatureMismatch(Exception):
    """The request is not signed with the shared secret, or its timestamp is stale."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Siyu-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def signed_headers(
    secret: str, body: bytes, clock: Callable[[], float] = time.time
) -> dict[str, str]:
    """Both headers for sending ``body`` now."""
    timestamp = int(clock())
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


def signed_timestamp(headers: Mapping[str, str], clock: Callable[[], float] = time.time) -> int:
    """The request's signed timestamp, checked before the body is read (it needs none).

    A missing header or a stale timestamp is a :class:`SignatureMismatch` (the request is not
    signed now); a timestamp header that is present but not a timestamp raises
    :class:`~adapters.freshness.MalformedTimestamp` (a malformed request, 400)."""
    raw_ts = headers.get(TIMESTAMP_HEADER, "")
    if not headers.get(SIGNATURE_HEADER):
        raise SignatureMismatch(f"missing {SIGNATURE_HEADER}")
    if not raw_ts:
        raise SignatureMismatch(f"missing {TIMESTAMP_HEADER}")
    try:
        return fresh_timestamp(raw_ts, clock(), name=TIMESTAMP_HEADER)
    except StaleTimestamp as exc:
        raise SignatureMismatch(str(exc)) from None


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    clock: Callable[[], float] = time.time,
) -> None:
    """Raise :class:`SignatureMismatch` unless ``headers`` sign ``body`` freshly (see
    :func:`signed_timestamp` for what is checked before the body)."""
    timestamp = signed_timestamp(headers, clock)
    given = headers.get(SIGNATURE_HEADER, "")
    if not hmac.compare_digest(given.encode(), sign(secret, timestamp, body).encode()):
        raise SignatureMismatch("signature does not match")
