"""The WXBizMsgCrypt callback scheme shared by WeCom and the Official Account's safe mode.

Facts (DESIGN.md §3):

- ``msg_signature = sha1("".join(sorted([token, timestamp, nonce, encrypt])))``, lower-case hex;
- key = base64(EncodingAESKey + "="), 32 bytes; AES-256-CBC with IV = key[:16];
- PKCS#7 padding to a **32-byte** block (pad values 1..32);
- plaintext = 16 random bytes + uint32 big-endian length + message + receive_id.

Unpadding is strict: the ciphertext must be a whole number of 32-byte blocks and every pad byte
must carry the pad value 1..32. What the platform sends always satisfies this; a 16-byte padder's
output that is an odd number of 16-byte blocks is refused with :class:`DecryptError`.

Signatures are checked before anything is decrypted, in constant time. Timestamps must be ASCII
digits of a sane length (:func:`adapters.freshness.parse_timestamp`, the one parser every signed
channel uses) and nonces short: oversized or odd inputs are a :class:`SignatureError`, never a
crash. Freshness of the timestamp is the callback endpoint's (it owns the clock:
:mod:`adapters.wecom.callback`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from adapters.freshness import MalformedTimestamp, parse_timestamp
from adapters.wecom.errors import DecryptError, ReceiveIdError, SignatureError
from adapters.wecom.xmlwire import build_xml

BLOCK_BYTES = 32
RANDOM_BYTES = 16
_LENGTH = struct.Struct(">I")
_HEADER_BYTES = RANDOM_BYTES + _LENGTH.size

MAX_NONCE_CHARS = 64
_SIGNATURE = re.compile(r"[0-9a-fA-F]{40}")


@dataclass(frozen=True)
class CallbackCrypto:
    """Sign, verify, encrypt and decrypt callbacks for one account.

    ``receive_id`` is the corp id (WeCom) or the app id (Official Account) that every decrypted
    message must end with. Raises ``ValueError`` at construction for an empty token or an
    EncodingAESKey that is not 43 base64 characters decoding to 32 bytes.
    """

    token: str
    encoding_aes_key: str
    receive_id: str

    def __post_init__(self) -> None:
        if not self.token:
            raise ValueError("token must not be empty")
        _aes_key(self.encoding_aes_key)

    @property
    def _key(self) -> bytes:
        return _aes_key(self.encoding_aes_key)

    def signature(self, timestamp: str, nonce: str, encrypt: str) -> str:
        """The ``msg_signature`` of ``encrypt``: sha1 of the sorted, joined parts, hex."""
        return _sha1_sorted(self.token, timestamp, nonce, encrypt)

    def verify(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> None:
        """Constant-time check that ``msg_signature`` signs ``encrypt``, else SignatureError."""
        _check_signature_inputs(msg_signature, timestamp, nonce)
        _compare(msg_signature, self.signature(timestamp, nonce, encrypt))

    def decrypt(self, encrypt: str) -> str:
        """The message inside ``encrypt``.

        Raises :class:`DecryptError` for bad base64, a partial block, bad padding, a bad length
        field or a message that is not UTF-8; :class:`ReceiveIdError` when the trailing receive id
        is not ours.
        """
        ciphertext = _b64decode(encrypt)
        if not ciphertext or len(ciphertext) % BLOCK_BYTES:
            raise DecryptError(f"ciphertext of {len(ciphertext)} bytes is not whole 32-byte blocks")
        decryptor = self._cipher().decryptor()
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        message, receive_id = _split_plaintext(_unpad(padded))
        if not hmac.compare_digest(receive_id, self.receive_id.encode("utf-8")):
            raise ReceiveIdError("the message is addressed to another receive id")
        return message

    def encrypt(self, plaintext: str, *, random16: bytes | None = None) -> str:
        """``plaintext`` encrypted, base64; ``random16`` fixes the random prefix (tests)."""
        prefix = os.urandom(RANDOM_BYTES) if random16 is None else random16
        if len(prefix) != RANDOM_BYTES:
            raise ValueError(f"random16 must be {RANDOM_BYTES} bytes, got {len(prefix)}")
        message = plaintext.encode("utf-8")
        body = prefix + _LENGTH.pack(len(message)) + message + self.receive_id.encode("utf-8")
        encryptor = self._cipher().encryptor()
        ciphertext = encryptor.update(_pad(body)) + encryptor.finalize()
        return base64.b64encode(ciphertext).decode("ascii")

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """WeCom's GET URL check: verify the signature over ``echostr``, return its plaintext."""
        self.verify(msg_signature, timestamp, nonce, echostr)
        return self.decrypt(echostr)

    def encrypted_reply(self, reply_xml: str, *, timestamp: str, nonce: str) -> str:
        """The passive-reply envelope carrying ``reply_xml`` encrypted and signed.

        Raises ``ValueError`` for a timestamp that is not digits or an oversized nonce: both are
        ours to choose (usually the callback's own), so a bad one is a programming error.
        """
        seconds = parse_timestamp(timestamp)  # MalformedTimestamp is a ValueError
        if not 0 < len(nonce) <= MAX_NONCE_CHARS:
            raise ValueError(f"nonce must be 1-{MAX_NONCE_CHARS} characters")
        encrypt = self.encrypt(reply_xml)
        return build_xml(
            {
                "Encrypt": encrypt,
                "MsgSignature": self.signature(timestamp, nonce, encrypt),
                "TimeStamp": seconds,
                "Nonce": nonce,
            }
        )

    def _cipher(self) -> Cipher[modes.CBC]:
        key = self._key
        return Cipher(algorithms.AES(key), modes.CBC(key[:RANDOM_BYTES]))


def plain_signature(token: str, timestamp: str, nonce: str) -> str:
    """The Official Account's plain-mode ``signature``: sha1 of sorted token, timestamp, nonce."""
    return _sha1_sorted(token, timestamp, nonce)


def verify_plain(token: str, signature: str, timestamp: str, nonce: str) -> None:
    """Raise :class:`SignatureError` unless ``signature`` is the plain-mode one (constant time)."""
    _check_signature_inputs(signature, timestamp, nonce)
    _compare(signature, plain_signature(token, timestamp, nonce))


def _aes_key(encoding_aes_key: str) -> bytes:
    if len(encoding_aes_key) != 43:
        raise ValueError(f"EncodingAESKey must be 43 characters, got {len(encoding_aes_key)}")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"EncodingAESKey is not base64: {exc}") from exc
    return key  # 43 base64 characters + "=" always decode to exactly 32 bytes


def _sha1_sorted(*parts: str) -> str:
    joined = "".join(sorted(parts))
    return hashlib.sha1(joined.encode("utf-8", "surrogatepass")).hexdigest()


def _check_signature_inputs(signature: str, timestamp: str, nonce: str) -> None:
    if not _SIGNATURE.fullmatch(signature):
        raise SignatureError("signature is not 40 hex digits")
    try:
        parse_timestamp(timestamp)
    except MalformedTimestamp as exc:
        raise SignatureError(str(exc)) from None
    if not 0 < len(nonce) <= MAX_NONCE_CHARS:
        raise SignatureError(f"nonce must be 1-{MAX_NONCE_CHARS} characters")


def _compare(given: str, expected: str) -> None:
    # Inputs are checked to be hex first, so the ASCII-only str compare cannot raise TypeError.
    if not hmac.compare_digest(given.lower(), expected):
        raise SignatureError("signature does not match")


def _b64decode(encrypt: str) -> bytes:
    try:
        return base64.b64decode(encrypt, validate=True)
    except (binascii.Error, ValueError) as exc:
        # ValueError: non-ASCII characters in a str argument.
        raise DecryptError(f"not base64: {exc}") from exc


def _pad(data: bytes) -> bytes:
    pad = BLOCK_BYTES - len(data) % BLOCK_BYTES  # 1..32: a whole block when already aligned
    return data + bytes([pad]) * pad


def _unpad(padded: bytes) -> bytes:
    pad = padded[-1]
    if not 1 <= pad <= BLOCK_BYTES or padded[-pad:] != bytes([pad]) * pad:
        raise DecryptError("bad PKCS#7 padding")
    return padded[:-pad]


def _split_plaintext(plain: bytes) -> tuple[str, bytes]:
    if len(plain) < _HEADER_BYTES:
        raise DecryptError("plaintext shorter than its header")
    (length,) = _LENGTH.unpack_from(plain, RANDOM_BYTES)
    end = _HEADER_BYTES + length
    if end > len(plain):
        raise DecryptError(f"length field {length} runs past the plaintext")
    try:
        message = plain[_HEADER_BYTES:end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecryptError("message is not UTF-8") from exc
    return message, plain[end:]
