"""crypto wrappers: deterministic keys and task signatures from the wheel vectors, sealed boxes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from spec_vectors import load_vector

from xaynet_sdk.codec.crypto import (
    LARGE_SIGNATURE_INPUT,
    SEALBYTES,
    EncryptKeyPair,
    SigningKeyPair,
    open_sealed,
    seal,
    sha256,
    sign,
    sum_signature,
    update_signature,
    verify,
    verify_sum_signature,
    verify_update_signature,
)
from xaynet_sdk.codec.errors import DecodeError, DecryptError, EncodeError

E2E = load_vector("e2e_messages_wheel")
KEYS = E2E["keys"]
ROUND_SEED = bytes.fromhex(E2E["round_seed_hex"])


def test_signing_keypair_from_seed_matches_sodium_layout() -> None:
    keys = SigningKeyPair.from_seed(bytes.fromhex(KEYS["participant_signing_seed_hex"]))
    assert keys.public.hex() == KEYS["participant_public_signing_key_hex"]
    assert keys.secret.hex() == KEYS["participant_secret_signing_key_hex_sodium_64"]
    assert keys.seed == bytes(32)
    assert SigningKeyPair.from_secret(keys.secret) == keys


def test_box_keypairs_from_seed() -> None:
    ephm = EncryptKeyPair.from_seed(bytes.fromhex(KEYS["sum_ephemeral_box_keypair_from_seed_hex"]))
    assert ephm.public.hex() == KEYS["ephm_pk_hex"]
    assert ephm.secret.hex() == KEYS["ephm_sk_hex"]
    coord = EncryptKeyPair.from_seed(bytes.fromhex(KEYS["coordinator_box_keypair_from_seed_hex"]))
    assert coord.public.hex() == KEYS["coordinator_pk_hex"]
    assert coord.secret.hex() == KEYS["coordinator_sk_hex"]


def test_task_signatures_vector() -> None:
    keys = SigningKeyPair.from_seed(bytes(32))
    sum_sig = sum_signature(keys.secret, ROUND_SEED)
    upd_sig = update_signature(keys.secret, ROUND_SEED)
    assert sum_sig.hex() == E2E["sum_task_signature_hex"]
    assert upd_sig.hex() == E2E["update_task_signature_hex_derived"]
    # no separator, no length prefix: exactly seed || "sum"
    assert sum_sig == sign(keys.secret, ROUND_SEED + b"sum")
    assert verify_sum_signature(keys.public, sum_sig, ROUND_SEED)
    assert verify_update_signature(keys.public, upd_sig, ROUND_SEED)
    assert not verify_sum_signature(keys.public, upd_sig, ROUND_SEED)
    assert not verify_update_signature(keys.public, sum_sig, ROUND_SEED)
    assert not verify_sum_signature(keys.public, sum_sig, ROUND_SEED[:31])


def test_sign_verify() -> None:
    keys = SigningKeyPair.generate()
    sig = keys.sign(b"hello")
    assert len(sig) == 64
    assert verify(keys.public, sig, b"hello")
    assert verify(keys.public, sig, memoryview(b"hello"))
    assert not verify(keys.public, sig, b"hellO")
    assert not verify(SigningKeyPair.generate().public, sig, b"hello")
    bad = bytearray(sig)
    bad[10] ^= 1
    assert not verify(keys.public, bytes(bad), b"hello")
    # malformed lengths are "not valid", never a read past a buffer
    assert not verify(keys.public[:31], sig, b"hello")
    assert not verify(keys.public, sig[:63], b"hello")


@pytest.mark.parametrize(
    "size", [LARGE_SIGNATURE_INPUT - 1, LARGE_SIGNATURE_INPUT, 3 * LARGE_SIGNATURE_INPUT + 5]
)
def test_large_inputs_get_libsodiums_signature(size: int) -> None:
    """Large messages are signed with OpenSSL: the bytes must be libsodium's, for any input
    type the message encoder passes (bytes, a memoryview into a bytearray)."""
    import nacl.bindings

    keys = SigningKeyPair.generate()
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    expected = nacl.bindings.crypto_sign(data, keys.secret)[:64]
    assert sign(keys.secret, data) == expected
    assert sign(keys.secret, memoryview(bytearray(b"xx" + data))[2:]) == expected
    assert verify(keys.public, expected, memoryview(data))


def test_large_input_with_an_inconsistent_secret_key_is_signed_as_libsodium_does() -> None:
    """A 64-byte secret key whose second half is not its seed's public key: OpenSSL would
    sign under the recomputed key, libsodium under the given one; we keep libsodium's."""
    import nacl.bindings

    keys, other = SigningKeyPair.generate(), SigningKeyPair.generate()
    odd = keys.secret[:32] + other.public
    data = b"m" * (2 * LARGE_SIGNATURE_INPUT)
    assert sign(odd, data) == nacl.bindings.crypto_sign(data, odd)[:64]
    assert sign(odd, data) != sign(keys.secret, data)


def test_key_validation() -> None:
    keys = SigningKeyPair.generate()
    with pytest.raises(EncodeError, match="secret key must be 64 bytes"):
        sign(keys.secret[:32], b"x")
    with pytest.raises(EncodeError, match="does not belong"):
        SigningKeyPair(SigningKeyPair.generate().public, keys.secret)
    with pytest.raises(EncodeError):
        SigningKeyPair.from_seed(b"\x00" * 31)
    with pytest.raises(EncodeError):
        sum_signature(keys.secret, b"\x00" * 31)
    with pytest.raises(EncodeError):
        EncryptKeyPair(b"\x00" * 32, b"\x00" * 31)


def test_secrets_not_in_repr() -> None:
    keys = SigningKeyPair.from_seed(b"\x42" * 32)
    assert keys.secret.hex() not in repr(keys) and repr(keys.secret) not in repr(keys)
    box = EncryptKeyPair.from_seed(b"\x42" * 32)
    assert repr(box.secret) not in repr(box)


def test_seal_open() -> None:
    coord = EncryptKeyPair.from_seed(bytes.fromhex(KEYS["coordinator_box_keypair_from_seed_hex"]))
    ct = seal(b"\x07" * 32, coord.public)
    assert len(ct) == 32 + SEALBYTES == 80
    assert seal(b"\x07" * 32, coord.public) != ct  # randomized
    assert open_sealed(ct, coord.public, coord.secret) == b"\x07" * 32
    assert coord.open(ct) == b"\x07" * 32
    assert open_sealed(seal(b"", coord.public), coord.public, coord.secret) == b""


def test_open_failures_raise_decrypt_error() -> None:
    coord = EncryptKeyPair.generate()
    other = EncryptKeyPair.generate()
    ct = seal(b"secret", coord.public)
    with pytest.raises(DecryptError, match="does not open"):
        open_sealed(ct, other.public, other.secret)
    tampered = bytearray(ct)
    tampered[-1] ^= 1
    with pytest.raises(DecryptError):
        open_sealed(bytes(tampered), coord.public, coord.secret)
    with pytest.raises(DecryptError, match="need at least 48 bytes, have 47"):
        open_sealed(ct[:47], coord.public, coord.secret)
    assert issubclass(DecryptError, DecodeError)


def test_sha256() -> None:
    assert sha256(b"").hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@settings(max_examples=50)
@given(st.binary(max_size=300))
def test_open_random_bytes_raises_only_decrypt_error(data: bytes) -> None:
    coord = EncryptKeyPair.from_seed(b"\x01" * 32)
    with pytest.raises(DecryptError):
        open_sealed(data, coord.public, coord.secret)


@settings(max_examples=50)
@given(st.binary(max_size=300), st.binary(min_size=32, max_size=32))
def test_seal_roundtrip_and_sign_roundtrip(data: bytes, seed: bytes) -> None:
    box = EncryptKeyPair.from_seed(seed)
    assert open_sealed(seal(data, box.public), box.public, box.secret) == data
    keys = SigningKeyPair.from_seed(seed)
    assert verify(keys.public, sign(keys.secret, data), data)


def test_seal_to_low_order_key_is_an_encode_error() -> None:
    """A coordinator advertising an all-zero key: libsodium refuses, we raise EncodeError."""
    with pytest.raises(EncodeError, match="cannot seal"):
        seal(b"x", bytes(32))
