"""WXBizMsgCrypt: the official WeCom vectors, round trips, 32-byte padding and hostile inputs."""

from __future__ import annotations

import base64
import hashlib
import random
import struct

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from adapters.wecom.crypto import CallbackCrypto, plain_signature, verify_plain
from adapters.wecom.errors import CallbackError, DecryptError, ReceiveIdError, SignatureError
from adapters.wecom.xmlwire import parse_xml

# Official vectors of WeCom doc 91144 (DESIGN.md §3) and its WXBizMsgCrypt samples.
CORP_ID = "wx5823bf96d3bd56c7"
TOKEN = "QDG6eK"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
GET_SIGNATURE = "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3"
GET_TIMESTAMP = "1409659589"
GET_NONCE = "263014780"
GET_ECHOSTR = (
    "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
)
POST_SIGNATURE = "477715d11cdb4164915debcba66cb864d751f3e6"
POST_TIMESTAMP = "1409659813"
POST_NONCE = "1372623149"
POST_ENCRYPT = (
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3Qczc"
    "dCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLj"
    "vd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMn"
    "vw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k"
    "22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2Yoy"
    "yH2uyPIGHBZZIs2pDBS8R07+qN+E7Q=="
)
KEY = base64.b64decode(AES_KEY + "=")


@pytest.fixture
def crypto() -> CallbackCrypto:
    return CallbackCrypto(token=TOKEN, encoding_aes_key=AES_KEY, receive_id=CORP_ID)


def raw_encrypt(plain: bytes) -> str:
    """AES-256-CBC of already padded bytes, base64: lets a test forge any padding."""
    encryptor = Cipher(algorithms.AES(KEY), modes.CBC(KEY[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


def raw_decrypt(encrypt: str) -> bytes:
    decryptor = Cipher(algorithms.AES(KEY), modes.CBC(KEY[:16])).decryptor()
    return decryptor.update(base64.b64decode(encrypt)) + decryptor.finalize()


def body(message: bytes, receive_id: bytes = CORP_ID.encode()) -> bytes:
    return b"R" * 16 + struct.pack(">I", len(message)) + message + receive_id


# --- the official vectors -------------------------------------------------------------------


def test_official_get_vector_answers_exactly_the_echo_plaintext(crypto: CallbackCrypto) -> None:
    reply = crypto.verify_url(GET_SIGNATURE, GET_TIMESTAMP, GET_NONCE, GET_ECHOSTR)
    assert reply == "1616140317555161061"


def test_official_post_vector_verifies_and_decrypts_to_the_sample_message(
    crypto: CallbackCrypto,
) -> None:
    assert crypto.signature(POST_TIMESTAMP, POST_NONCE, POST_ENCRYPT) == POST_SIGNATURE
    crypto.verify(POST_SIGNATURE, POST_TIMESTAMP, POST_NONCE, POST_ENCRYPT)
    fields = parse_xml(crypto.decrypt(POST_ENCRYPT))
    assert fields["FromUserName"] == "mycreate"
    assert fields["Content"] == "hello"
    assert fields["MsgId"] == "4561255354251345929"


def test_official_signature_is_accepted_in_upper_case(crypto: CallbackCrypto) -> None:
    crypto.verify(GET_SIGNATURE.upper(), GET_TIMESTAMP, GET_NONCE, GET_ECHOSTR)


# --- round trips and the 32-byte padding ------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    ["", "a", "你好，请问会员日是哪天？", "<xml><Content><![CDATA[]]></Content></xml>", "🍵" * 500],
)
def test_encrypt_then_decrypt_returns_the_message(crypto: CallbackCrypto, message: str) -> None:
    encrypt = crypto.encrypt(message)
    assert len(base64.b64decode(encrypt)) % 32 == 0
    assert crypto.decrypt(encrypt) == message


def test_fixed_random_prefix_makes_encryption_deterministic(crypto: CallbackCrypto) -> None:
    first = crypto.encrypt("同一条", random16=b"0123456789abcdef")
    assert first == crypto.encrypt("同一条", random16=b"0123456789abcdef")
    assert first != crypto.encrypt("同一条")
    assert raw_decrypt(first).startswith(b"0123456789abcdef")


def test_random16_of_the_wrong_size_is_refused(crypto: CallbackCrypto) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        crypto.encrypt("x", random16=b"short")


def test_an_aligned_body_gets_a_whole_block_of_pad_32(crypto: CallbackCrypto) -> None:
    # 16 random + 4 length + 26 message + 18 corp id = 64 bytes: already a multiple of 32.
    message = "m" * 26
    encrypt = crypto.encrypt(message)
    plain = raw_decrypt(encrypt)
    assert len(plain) == 96
    assert plain[-32:] == bytes([32]) * 32
    assert crypto.decrypt(encrypt) == message


def test_pkcs7_to_16_byte_blocks_is_refused_when_it_is_not_32_aligned(
    crypto: CallbackCrypto,
) -> None:
    # 16 + 4 + 2 + 18 = 40 bytes: a 16-byte padder makes 48, an odd number of 16-byte blocks.
    padder = padding.PKCS7(128).padder()
    padded16 = padder.update(body(b"hi")) + padder.finalize()
    assert len(padded16) == 48
    with pytest.raises(DecryptError, match="32-byte blocks"):
        crypto.decrypt(raw_encrypt(padded16))


def test_pkcs7_to_16_byte_blocks_that_lands_32_aligned_is_valid_32_byte_padding(
    crypto: CallbackCrypto,
) -> None:
    # 16 + 4 + 20 + 18 = 58 bytes: both padders add 6 bytes of 6, so the output is identical.
    padder = padding.PKCS7(128).padder()
    padded16 = padder.update(body(b"x" * 20)) + padder.finalize()
    assert len(padded16) == 64
    assert crypto.decrypt(raw_encrypt(padded16)) == "x" * 20


@pytest.mark.parametrize("pad", [0, 33, 255])
def test_pad_values_outside_1_to_32_are_refused(crypto: CallbackCrypto, pad: int) -> None:
    unpadded = body(b"x" * 25)  # 63 bytes
    with pytest.raises(DecryptError, match="padding"):
        crypto.decrypt(raw_encrypt(unpadded + bytes([pad])))


def test_inconsistent_pad_bytes_are_refused(crypto: CallbackCrypto) -> None:
    unpadded = body(b"x" * 22)  # 60 bytes: 4 bytes of pad 4 expected
    with pytest.raises(DecryptError, match="padding"):
        crypto.decrypt(raw_encrypt(unpadded + b"\x01\x04\x04\x04"))


def test_property_random_payloads_round_trip_and_verify(crypto: CallbackCrypto) -> None:
    rng = random.Random(91144)
    alphabet = "abcXYZ019 <>&]]>\n\t会员积分优惠券门店🎁é\x00\x1f"
    for _ in range(300):
        message = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 200)))
        encrypt = crypto.encrypt(message, random16=rng.randbytes(16))
        timestamp, nonce = str(rng.randrange(10**10)), str(rng.randrange(10**9))
        crypto.verify(crypto.signature(timestamp, nonce, encrypt), timestamp, nonce, encrypt)
        assert crypto.decrypt(encrypt) == message


# --- hostile or broken ciphertexts ------------------------------------------------------------


@pytest.mark.parametrize("bad", ["@@@@", "中文密文", "abc", "YWJj\n", ""])
def test_bad_base64_is_a_decrypt_error(crypto: CallbackCrypto, bad: str) -> None:
    with pytest.raises(DecryptError):
        crypto.decrypt(bad)


def test_truncated_ciphertexts_are_refused(crypto: CallbackCrypto) -> None:
    raw = base64.b64decode(crypto.encrypt("会员日是每周三"))
    for cut in (1, 16, len(raw) - 1, len(raw) - 16):
        with pytest.raises(DecryptError):
            crypto.decrypt(base64.b64encode(raw[:cut]).decode())
    with pytest.raises(DecryptError):
        crypto.decrypt(crypto.encrypt("会员日是每周三")[:-4])


def test_tampering_any_byte_breaks_the_signature(crypto: CallbackCrypto) -> None:
    encrypt = crypto.encrypt("积分可以抵扣现金吗？")
    signature = crypto.signature("1700000000", "42", encrypt)
    raw = base64.b64decode(encrypt)
    for index in range(len(raw)):
        tampered = bytearray(raw)
        tampered[index] ^= 0x01
        forged = base64.b64encode(bytes(tampered)).decode()
        with pytest.raises(SignatureError):
            crypto.verify(signature, "1700000000", "42", forged)


def _decrypt_or_none(crypto: CallbackCrypto, encrypt: str) -> str | None:
    """The decrypted text, or None when the ciphertext is refused with a typed callback error."""
    try:
        return crypto.decrypt(encrypt)
    except CallbackError:
        return None


def test_tampered_ciphertext_never_decrypts_to_the_original_nor_crashes(
    crypto: CallbackCrypto,
) -> None:
    message = "积分可以抵扣现金吗？"
    raw = base64.b64decode(crypto.encrypt(message, random16=b"fixed-prefix-16b"))
    outcomes = []
    for index in range(len(raw)):
        tampered = bytearray(raw)
        tampered[index] ^= 0x80
        outcomes.append(_decrypt_or_none(crypto, base64.b64encode(bytes(tampered)).decode()))
    assert message not in outcomes
    assert outcomes.count(None) > len(raw) // 2  # most positions break padding, length or id
    with pytest.raises((DecryptError, ReceiveIdError)):
        crypto.decrypt(base64.b64encode(raw[:-1] + bytes([raw[-1] ^ 0x01])).decode())


def test_length_field_past_the_end_is_refused(crypto: CallbackCrypto) -> None:
    forged = b"R" * 16 + struct.pack(">I", 10_000) + b"hi" + CORP_ID.encode()
    with pytest.raises(DecryptError, match="length field"):
        crypto.decrypt(raw_encrypt(forged + bytes([24]) * 24))


def test_plaintext_shorter_than_its_header_is_refused(crypto: CallbackCrypto) -> None:
    with pytest.raises(DecryptError, match="header"):
        crypto.decrypt(raw_encrypt(b"R" * 16 + bytes([16]) * 16))


def test_message_that_is_not_utf8_is_refused(crypto: CallbackCrypto) -> None:
    forged = body("会员".encode("gbk"))  # 42 bytes
    with pytest.raises(DecryptError, match="UTF-8"):
        crypto.decrypt(raw_encrypt(forged + bytes([22]) * 22))


@pytest.mark.parametrize("other", ["wx0000000000000000", CORP_ID + "x", CORP_ID[:-1], ""])
def test_wrong_receive_id_is_refused(crypto: CallbackCrypto, other: str) -> None:
    sender = CallbackCrypto(token=TOKEN, encoding_aes_key=AES_KEY, receive_id=other)
    with pytest.raises(ReceiveIdError):
        crypto.decrypt(sender.encrypt("hello"))


# --- signatures ------------------------------------------------------------------------------


def test_wrong_signature_is_refused_before_decrypting(crypto: CallbackCrypto) -> None:
    with pytest.raises(SignatureError, match="does not match"):
        crypto.verify_url("0" * 40, GET_TIMESTAMP, GET_NONCE, GET_ECHOSTR)
    with pytest.raises(SignatureError, match="does not match"):
        crypto.verify(GET_SIGNATURE, GET_TIMESTAMP, "263014781", GET_ECHOSTR)


def test_a_correctly_signed_bad_echostr_is_a_decrypt_error(crypto: CallbackCrypto) -> None:
    signature = crypto.signature(GET_TIMESTAMP, GET_NONCE, "not base64!")
    with pytest.raises(DecryptError):
        crypto.verify_url(signature, GET_TIMESTAMP, GET_NONCE, "not base64!")


@pytest.mark.parametrize(
    ("signature", "timestamp", "nonce"),
    [
        ("签名" * 20, GET_TIMESTAMP, GET_NONCE),  # non-ASCII: compare_digest would raise TypeError
        (GET_SIGNATURE[:-1], GET_TIMESTAMP, GET_NONCE),
        (GET_SIGNATURE + "0", GET_TIMESTAMP, GET_NONCE),
        ("z" * 40, GET_TIMESTAMP, GET_NONCE),
        (GET_SIGNATURE, "9" * 100_000, GET_NONCE),
        (GET_SIGNATURE, "１４０９６５９５８９", GET_NONCE),  # full-width digits
        (GET_SIGNATURE, "-1409659589", GET_NONCE),
        (GET_SIGNATURE, "", GET_NONCE),
        (GET_SIGNATURE, GET_TIMESTAMP, ""),
        (GET_SIGNATURE, GET_TIMESTAMP, "n" * 100_000),
    ],
)
def test_odd_signature_inputs_are_signature_errors(
    crypto: CallbackCrypto, signature: str, timestamp: str, nonce: str
) -> None:
    with pytest.raises(SignatureError):
        crypto.verify(signature, timestamp, nonce, GET_ECHOSTR)
    with pytest.raises(SignatureError):
        verify_plain(TOKEN, signature, timestamp, nonce)


def test_plain_signature_is_sha1_of_the_sorted_three_parts() -> None:
    expected = hashlib.sha1("".join(sorted([TOKEN, "1409659589", "263014780"])).encode())
    assert plain_signature(TOKEN, "1409659589", "263014780") == expected.hexdigest()
    verify_plain(TOKEN, expected.hexdigest(), "1409659589", "263014780")
    with pytest.raises(SignatureError):
        verify_plain("other", expected.hexdigest(), "1409659589", "263014780")


# --- the passive-reply envelope ---------------------------------------------------------------


def test_encrypted_reply_verifies_and_decrypts_back(crypto: CallbackCrypto) -> None:
    reply_xml = "<xml><Content><![CDATA[会员日每周三，全场9折]]></Content></xml>"
    envelope = parse_xml(crypto.encrypted_reply(reply_xml, timestamp="1409659813", nonce="77"))
    assert set(envelope) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}
    assert (envelope["TimeStamp"], envelope["Nonce"]) == ("1409659813", "77")
    crypto.verify(envelope["MsgSignature"], "1409659813", "77", envelope["Encrypt"])
    assert crypto.decrypt(envelope["Encrypt"]) == reply_xml


def test_encrypted_reply_writes_the_timestamp_bare_and_the_rest_as_cdata(
    crypto: CallbackCrypto,
) -> None:
    text = crypto.encrypted_reply("<xml/>", timestamp="1409659813", nonce="77")
    assert text.startswith("<xml><Encrypt><![CDATA[")
    assert "<TimeStamp>1409659813</TimeStamp><Nonce><![CDATA[77]]></Nonce></xml>" in text


@pytest.mark.parametrize(("timestamp", "nonce"), [("abc", "1"), ("1" * 17, "1"), ("1", "")])
def test_encrypted_reply_refuses_a_bad_timestamp_or_nonce(
    crypto: CallbackCrypto, timestamp: str, nonce: str
) -> None:
    with pytest.raises(ValueError, match="timestamp" if nonce else "nonce"):
        crypto.encrypted_reply("<xml/>", timestamp=timestamp, nonce=nonce)


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", [AES_KEY[:-1], AES_KEY + "A", "!" * 43, "中" * 43, ""])
def test_a_bad_encoding_aes_key_is_a_value_error(key: str) -> None:
    with pytest.raises(ValueError, match="EncodingAESKey"):
        CallbackCrypto(token=TOKEN, encoding_aes_key=key, receive_id=CORP_ID)


def test_an_empty_token_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="token"):
        CallbackCrypto(token="", encoding_aes_key=AES_KEY, receive_id=CORP_ID)
