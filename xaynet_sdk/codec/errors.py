"""Exceptions of the codec layer.

Everything the codec raises on bad input derives from :class:`CodecError`, itself a
``ValueError`` (and a :class:`~xaynet_sdk.exceptions.XaynetError`), so callers that only
care "was this input usable?" can catch one class.
The split matters to the layers above:

* :class:`DecodeError` means *the bytes came from someone else and are unusable*
  (truncated, malformed, forged). A coordinator drops such a message and a participant
  treats such a response as a failed request; neither is a bug in this program.
* :class:`EncodeError` means *this program asked for something the wire format cannot
  express* (a key of the wrong length, a message too long for its u32 length field, an
  unusable message size limit). That is a bug or a configuration error on our side.

Messages name the field and the byte counts (for example
``"round parameters truncated: need 136 bytes, have 40"``) because the typical reader of
these errors is someone comparing a hex dump with docs/PROTOCOL.md.
"""

from __future__ import annotations

from ..exceptions import XaynetError

__all__ = [
    "CodecError",
    "DecodeError",
    "DecryptError",
    "EncodeError",
    "InvalidSignatureError",
    "ReassemblyError",
    "WrongCoordinatorKeyError",
]


class CodecError(XaynetError, ValueError):
    """Base class of every error raised by :mod:`xaynet_sdk.codec`."""


class DecodeError(CodecError):
    """Bytes received from a peer are truncated, malformed or otherwise unusable."""


class EncodeError(CodecError):
    """A value cannot be put on the wire (wrong length, out of range, bad size limit)."""


class DecryptError(DecodeError):
    """A sealed box could not be opened: wrong key, tampered or too short ciphertext.

    A subclass of :class:`DecodeError` because for the receiver a ciphertext that does not
    open is just one more kind of garbage input.
    """


class InvalidSignatureError(DecodeError):
    """A message's Ed25519 signature does not verify under the participant key in its header."""


class WrongCoordinatorKeyError(DecodeError):
    """A message names a coordinator key other than the current round's (a stale message)."""


class ReassemblyError(DecodeError):
    """A multipart chunk was refused by the reassembler (limits exceeded or inconsistent chunks)."""
