"""HMAC signatures of the generic JSON webhook, both directions.

A message is signed over ``f"{timestamp}.{body}"`` with HMAC-SHA256 and the bridge's shared
secret, sent as two headers::

    X-Siyu-Timestamp: 1764050000            (Unix seconds)
    X-Siyu-Signature: sha256=<64 hex>

The receiver recomputes the signature over the raw body bytes, compares in constant time and
refuses timestamps more than :data:`MAX_SKEW_S` from its clock (a captured request cannot be
replayed later; a replay inside the window is a duplicate message id, which the pipeline drops).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping

TIMESTAMP_HEADER = "X-Siyu-Timestamp"
SIGNATURE_HEADER = "X-Siyu-Signature"
MAX_SKEW_S = 300


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


def fresh_timestamp(headers: Mapping[str, str], clock: Callable[[], float] = time.time) -> int:
    """The request's signed timestamp; :class:`SignatureMismatch` unless both headers are present
    and the timestamp is fresh. Needs no body: checked before the body is read."""
    raw_ts = headers.get(TIMESTAMP_HEADER, "")
    if not headers.get(SIGNATURE_HEADER):
        raise SignatureMismatch(f"missing {SIGNATURE_HEADER}")
    if not raw_ts.isdigit() or len(raw_ts) > 12:
        raise SignatureMismatch(f"missing or malformed {TIMESTAMP_HEADER}")
    timestamp = int(raw_ts)
    if abs(clock() - timestamp) > MAX_SKEW_S:
        raise SignatureMismatch(f"{TIMESTAMP_HEADER} is more than {MAX_SKEW_S} s off")
    return timestamp


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    clock: Callable[[], float] = time.time,
) -> None:
    """Raise :class:`SignatureMismatch` unless ``headers`` sign ``body`` freshly."""
    timestamp = fresh_timestamp(headers, clock)
    given = headers.get(SIGNATURE_HEADER, "")
    if not hmac.compare_digest(given.encode(), sign(secret, timestamp, body).encode()):
        raise SignatureMismatch("signature does not match")
