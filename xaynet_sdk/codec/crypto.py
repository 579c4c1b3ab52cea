"""Typed wrappers over PyNaCl (libsodium) for the primitives of docs/PROTOCOL.md section 4.

The original uses sodiumoxide 0.2.6 on libsodium 1.0.18; PyNaCl calls the same libsodium
functions, so keys, signatures and sealed boxes interoperate byte for byte:

* Ed25519 (``crypto_sign``) for participant identities and every signature. The secret key
  is libsodium's 64-byte form ``seed ‖ public key``, which is also what the original's
  saved state stores, so it is used here rather than PyNaCl's 32-byte seed objects.
  Large messages are signed with OpenSSL instead (same signature bytes, see :func:`sign`);
  verification stays with libsodium, whose acceptance rules are the original's.
* X25519 sealed boxes (``crypto_box_seal``) for the message envelope and the mask seeds.
* SHA-256.

Lengths are checked here before calling into libsodium: PyNaCl's low-level bindings do
not check every argument (a 31-byte verification key is read as 32 bytes), and a wrong
length must be an error, not undefined behaviour.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import nacl.bindings as _sodium
import nacl.exceptions
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .bincode import BytesLike
from .errors import DecryptError, EncodeError

__all__ = [
    "EncryptKeyPair",
    "PUBLIC_KEY_LENGTH",
    "SEALBYTES",
    "SECRET_SIGNING_KEY_LENGTH",
    "SIGNATURE_LENGTH",
    "SUM_SIGNATURE_SUFFIX",
    "SigningKeyPair",
    "UPDATE_SIGNATURE_SUFFIX",
    "open_sealed",
    "seal",
    "sha256",
    "sign",
    "sum_signature",
    "update_signature",
    "verify",
    "verify_sum_signature",
    "verify_update_signature",
]

PUBLIC_KEY_LENGTH = 32  # Ed25519 and X25519 public keys alike
SECRET_SIGNING_KEY_LENGTH = 64  # libsodium Ed25519 secret key: seed ‖ public key
SEED_LENGTH = 32
SECRET_ENCRYPT_KEY_LENGTH = 32
SIGNATURE_LENGTH = 64
SEALBYTES = 48  # crypto_box_SEALBYTES: ephemeral pk (32) + Poly1305 tag (16)
SHA256_LENGTH = 32

#: Task signatures sign ``round_seed ‖ suffix`` with no separator (section 4.4).
SUM_SIGNATURE_SUFFIX = b"sum"
UPDATE_SIGNATURE_SUFFIX = b"update"


def _exact(value: BytesLike, length: int, what: str) -> bytes:
    raw = bytes(value)
    if len(raw) != length:
        raise EncodeError(f"{what} must be {length} bytes, got {len(raw)}")
    return raw


# ---------------------------------------------------------------------------------------------
# Ed25519
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKeyPair:
    """An Ed25519 key pair in libsodium layout: ``public`` 32 bytes, ``secret`` 64 bytes.

    The secret is excluded from ``repr`` so the pair can appear in logs and tracebacks.
    """

    public: bytes
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        public = _exact(self.public, PUBLIC_KEY_LENGTH, "Ed25519 public key")
        secret = _exact(self.secret, SECRET_SIGNING_KEY_LENGTH, "Ed25519 secret key")
        if secret[32:] != public:
            raise EncodeError("Ed25519 secret key does not belong to the public key")
        object.__setattr__(self, "public", public)
        object.__setattr__(self, "secret", secret)

    @classmethod
    def generate(cls) -> "SigningKeyPair":
        """A fresh random identity (``crypto_sign_keypair``)."""
        pk, sk = _sodium.crypto_sign_keypair()
        return cls(pk, sk)

    @classmethod
    def from_seed(cls, seed: BytesLike) -> "SigningKeyPair":
        """The deterministic key pair of a 32-byte seed (``crypto_sign_seed_keypair``)."""
        pk, sk = _sodium.crypto_sign_seed_keypair(_exact(seed, SEED_LENGTH, "Ed25519 seed"))
        return cls(pk, sk)

    @classmethod
    def from_secret(cls, secret: BytesLike) -> "SigningKeyPair":
        """Rebuild the pair from a 64-byte libsodium secret key (its second half is the pk)."""
        raw = _exact(secret, SECRET_SIGNING_KEY_LENGTH, "Ed25519 secret key")
        return cls(raw[32:], raw)

    @property
    def seed(self) -> bytes:
        return self.secret[:32]

    def sign(self, data: BytesLike) -> bytes:
        return sign(self.secret, data)


#: From this many bytes on, :func:`sign` uses OpenSSL (the ``cryptography`` package).
LARGE_SIGNATURE_INPUT = 64 * 1024


def sign(secret: BytesLike, data: BytesLike) -> bytes:
    """A 64-byte detached Ed25519 signature of ``data`` (deterministic, RFC 8032).

    Ed25519 signatures are a function of the key and the message only, so libsodium and
    OpenSSL produce the same bytes. Large inputs (whole messages with a model) are signed
    with OpenSSL, whose SHA-512 is about twice as fast and which signs a buffer in place;
    PyNaCl's ``crypto_sign`` copies the message twice and returns it with the signature.
    OpenSSL recomputes the public key from the seed, so a secret key whose second half is
    not that key (a corrupted saved state) stays with libsodium, which signs exactly what
    it is given.
    """
    sk = _exact(secret, SECRET_SIGNING_KEY_LENGTH, "Ed25519 secret key")
    if len(data) >= LARGE_SIGNATURE_INPUT:
        key = Ed25519PrivateKey.from_private_bytes(sk[:32])
        if key.public_key().public_bytes_raw() == sk[32:]:
            return key.sign(data)
    # PyNaCl exposes only the combined form (signature ‖ message); the first 64 bytes are
    # exactly what crypto_sign_detached would return.
    return bytes(_sodium.crypto_sign(bytes(data), sk)[:SIGNATURE_LENGTH])


def verify(
    pk: BytesLike,
    signature: BytesLike,
    data: BytesLike,
) -> bool:
    """True iff ``signature`` is a valid Ed25519 signature of ``data`` under ``pk``.

    Malformed inputs (wrong lengths) are simply "not valid": the caller is usually checking
    bytes a peer sent, and has nothing better to do with them than reject.
    """
    if len(pk) != PUBLIC_KEY_LENGTH or len(signature) != SIGNATURE_LENGTH:
        return False
    try:
        # One copy of a large message (join takes memoryviews), not two.
        _sodium.crypto_sign_open(b"".join((signature, data)), bytes(pk))
    except nacl.exceptions.CryptoError:
        return False
    return True


def sum_signature(secret: BytesLike, round_seed: BytesLike) -> bytes:
    """``Sign(round_seed ‖ b"sum")``: decides sum eligibility and proves it to the coordinator."""
    return sign(secret, _exact(round_seed, SEED_LENGTH, "round seed") + SUM_SIGNATURE_SUFFIX)


def update_signature(secret: BytesLike, round_seed: BytesLike) -> bytes:
    """``Sign(round_seed ‖ b"update")``: decides update eligibility."""
    return sign(secret, _exact(round_seed, SEED_LENGTH, "round seed") + UPDATE_SIGNATURE_SUFFIX)


def verify_sum_signature(
    pk: BytesLike,
    signature: BytesLike,
    round_seed: BytesLike,
) -> bool:
    """True iff ``signature`` is ``pk``'s sum task signature for ``round_seed``."""
    return len(round_seed) == SEED_LENGTH and verify(
        pk, signature, bytes(round_seed) + SUM_SIGNATURE_SUFFIX
    )


def verify_update_signature(
    pk: BytesLike,
    signature: BytesLike,
    round_seed: BytesLike,
) -> bool:
    """True iff ``signature`` is ``pk``'s update task signature for ``round_seed``."""
    return len(round_seed) == SEED_LENGTH and verify(
        pk, signature, bytes(round_seed) + UPDATE_SIGNATURE_SUFFIX
    )


# ---------------------------------------------------------------------------------------------
# X25519 sealed boxes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncryptKeyPair:
    """An X25519 ``crypto_box`` key pair (coordinator round key, sum participant ephemeral key)."""

    public: bytes
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "public", _exact(self.public, PUBLIC_KEY_LENGTH, "X25519 public key")
        )
        object.__setattr__(
            self, "secret", _exact(self.secret, SECRET_ENCRYPT_KEY_LENGTH, "X25519 secret key")
        )

    @classmethod
    def generate(cls) -> "EncryptKeyPair":
        pk, sk = _sodium.crypto_box_keypair()
        return cls(pk, sk)

    @classmethod
    def from_seed(cls, seed: BytesLike) -> "EncryptKeyPair":
        """``crypto_box_seed_keypair``: sk = SHA-512(seed)[:32]. Deterministic; for tests."""
        pk, sk = _sodium.crypto_box_seed_keypair(_exact(seed, SEED_LENGTH, "X25519 seed"))
        return cls(pk, sk)

    def open(self, ciphertext: BytesLike) -> bytes:
        return open_sealed(ciphertext, self.public, self.secret)


def seal(plaintext: BytesLike, pk: BytesLike) -> bytes:
    """``crypto_box_seal``: anonymous encryption to ``pk``; ``len(plaintext) + 48`` bytes.

    Randomized (a fresh ephemeral key per call), so a message to be resent must be kept sealed.
    """
    key = _exact(pk, PUBLIC_KEY_LENGTH, "X25519 public key")
    try:
        return bytes(_sodium.crypto_box_seal(bytes(plaintext), key))
    except nacl.exceptions.CryptoError as e:  # e.g. a low-order public key
        raise EncodeError(f"cannot seal to this public key: {e}") from None


def open_sealed(
    ciphertext: BytesLike,
    pk: BytesLike,
    sk: BytesLike,
) -> bytes:
    """``crypto_box_seal_open``; raises :class:`DecryptError` if the box does not open."""
    public = _exact(pk, PUBLIC_KEY_LENGTH, "X25519 public key")
    secret = _exact(sk, SECRET_ENCRYPT_KEY_LENGTH, "X25519 secret key")
    if len(ciphertext) < SEALBYTES:
        raise DecryptError(
            f"sealed box truncated: need at least {SEALBYTES} bytes, have {len(ciphertext)}"
        )
    try:
        return bytes(_sodium.crypto_box_seal_open(bytes(ciphertext), public, secret))
    except nacl.exceptions.CryptoError:
        raise DecryptError(
            f"sealed box of {len(ciphertext)} bytes does not open with this key pair"
        ) from None


def sha256(data: BytesLike) -> bytes:
    return hashlib.sha256(data).digest()
