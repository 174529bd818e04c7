"""Errors of the WeChat / WeCom adapters.

WeComError
├── CallbackError              an inbound callback is refused (the HTTP layer answers 4xx)
│   ├── SignatureError         msg_signature / signature does not match (constant-time compare)
│   ├── StaleCallback          the signed timestamp is more than 5 minutes from our clock
│   ├── DecryptError           bad base64, bad AES block, bad PKCS#7 padding, bad length field
│   ├── ReceiveIdError         the decrypted receive id is not our corp id / app id
│   └── MalformedXML           not well-formed, entity declarations (XML bombs), missing fields
├── APIError                   the platform API answered errcode != 0, or did not answer
│   ├── TokenExpiredError      40014 / 42001 / 40001: refetch the access token and retry once
│   ├── RateLimitedError       45009 / 45033 (API frequency) : back off and retry, bounded
│   ├── SystemBusyError        -1: retry at most 3 times
│   ├── WindowClosedError      kf 95001 / 95002 / 95018, OA 45015 / 45047: outside the member's
│   │                          48-hour / 5-message window; never retried
│   └── TransportError         timeout, connection refused, HTTP error status, non-JSON body
│       └── PlatformUnavailable   the API's circuit breaker is open: nothing was sent; retry later
└── BadRequestError            (also a ValueError) the client refuses to send: text over its byte
                               limit, a malformed msgid, a parameter out of range; nothing sent
"""

from __future__ import annotations


class WeComError(Exception):
    """Root of the WeChat / WeCom adapters' errors."""


class CallbackError(WeComError):
    """An inbound callback is refused; ``status`` is the HTTP status to answer with."""

    status = 400


class SignatureError(CallbackError):
    """The callback's signature does not match."""

    status = 401


class StaleCallback(CallbackError):
    """The callback's signed timestamp is outside the freshness window (a replay, or a sender
    whose clock is wrong): refused like a signature that does not match."""

    status = 401


class DecryptError(CallbackError):
    """The encrypted payload cannot be decrypted or unpadded."""


class ReceiveIdError(CallbackError):
    """The decrypted message is addressed to another corp / app."""

    status = 403


class MalformedXML(CallbackError):
    """The XML is not well-formed, declares entities, or lacks a required element."""


class APIError(WeComError):
    """The platform answered ``errcode`` != 0 (``errcode`` -2 for transport failures)."""

    def __init__(self, errcode: int, errmsg: str, *, api: str = "") -> None:
        super().__init__(f"{api or 'api'}: errcode {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg
        self.api = api


class TokenExpiredError(APIError):
    """The access token is invalid or expired (40014, 42001, 40001)."""


class RateLimitedError(APIError):
    """The API frequency limit was hit (45009, 45033)."""


class SystemBusyError(APIError):
    """The platform is busy (-1)."""


class WindowClosedError(APIError):
    """The member's reply window is closed (kf 95001/95002/95018, OA 45015/45047)."""


class TransportError(APIError):
    """No usable answer: timeout, connection error, HTTP error status or a non-JSON body.

    ``maybe_delivered`` is False only when the request never reached the platform (the
    connection could not be made); after a timeout, an error status or an unreadable answer the
    platform may have acted on it, so a send must not be repeated blindly."""

    def __init__(self, errmsg: str, *, api: str = "", maybe_delivered: bool = True) -> None:
        super().__init__(-2, errmsg, api=api)
        self.maybe_delivered = maybe_delivered


class PlatformUnavailable(TransportError):
    """The platform API kept failing and its circuit breaker is open: the call was not made
    (``maybe_delivered`` is False), so the delivery worker retries it later like any transport
    failure (:class:`bot.errors.DeliveryError` ``transport``, retryable)."""

    def __init__(self, errmsg: str = "the platform API is unavailable", *, api: str = "") -> None:
        super().__init__(errmsg, api=api, maybe_delivered=False)


class BadRequestError(WeComError, ValueError):
    """The client refuses to send a request: content over its byte limit, a malformed msgid, a
    parameter out of range. Nothing was sent."""


TOKEN_ERRCODES = frozenset({40001, 40014, 42001})
RATE_ERRCODES = frozenset({45009, 45033})
WINDOW_ERRCODES = frozenset({95001, 95002, 95018, 45015, 45047})


def api_error(errcode: int, errmsg: str, *, api: str = "") -> APIError:
    """The typed exception for a platform ``errcode``."""
    if errcode in TOKEN_ERRCODES:
        return TokenExpiredError(errcode, errmsg, api=api)
    if errcode in RATE_ERRCODES:
        return RateLimitedError(errcode, errmsg, api=api)
    if errcode == -1:
        return SystemBusyError(errcode, errmsg, api=api)
    if errcode in WINDOW_ERRCODES:
        return WindowClosedError(errcode, errmsg, api=api)
    return APIError(errcode, errmsg, api=api)
