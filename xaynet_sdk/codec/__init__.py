"""The codec layer: bytes in, typed values out, and back (docs/PROTOCOL.md sections 3 to 5).

Pure functions and small value types over ``bytes``: no I/O, no threads, no global state.
Malformed input from a peer raises :class:`DecodeError` (or a subclass); values that cannot
be put on the wire raise :class:`EncodeError`. Both are ``ValueError``\\ s.

Submodules:

* :mod:`.bincode`: the bincode subset (round parameters, sum and seed dicts, big numbers).
* :mod:`.crypto`: Ed25519, sealed boxes, SHA-256, task signatures (PyNaCl).
* :mod:`.eligibility`: the exact-rational task selection rule.
* :mod:`.message`: message header, payloads, LocalSeedDict, signing and verification.
* :mod:`.multipart`: chunking on the way out, bounded reassembly on the way in.
"""

from .bincode import (
    ROUND_PARAMETERS_LENGTH,
    Reader,
    RoundParameters,
    decode_sum_dict,
    decode_update_seed_dict,
    encode_model,
    encode_sum_dict,
    encode_update_seed_dict,
)
from .crypto import (
    EncryptKeyPair,
    SigningKeyPair,
    open_sealed,
    seal,
    sha256,
    sign,
    sum_signature,
    update_signature,
    verify,
)
from .eligibility import is_eligible
from .errors import (
    CodecError,
    DecodeError,
    DecryptError,
    EncodeError,
    InvalidSignatureError,
    ReassemblyError,
    WrongCoordinatorKeyError,
)
from .message import (
    HEADER_LENGTH,
    LAST_CHUNK,
    MULTIPART,
    SEALBYTES,
    ChunkPayload,
    Message,
    MessageHeader,
    Payload,
    Sum2Payload,
    SumPayload,
    Tag,
    UpdatePayload,
    decode_header,
    decode_local_seed_dict,
    decode_message,
    decode_payload,
    encode_local_seed_dict,
    encode_message,
)
from .multipart import (
    DEFAULT_MAX_MESSAGE_SIZE,
    MIN_MESSAGE_SIZE,
    MessageEncoder,
    split_payload,
)

__all__ = [
    "ChunkPayload",
    "CodecError",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DecodeError",
    "DecryptError",
    "EncodeError",
    "EncryptKeyPair",
    "HEADER_LENGTH",
    "InvalidSignatureError",
    "LAST_CHUNK",
    "MIN_MESSAGE_SIZE",
    "MULTIPART",
    "Message",
    "MessageEncoder",
    "MessageHeader",
    "Payload",
    "ROUND_PARAMETERS_LENGTH",
    "Reader",
    "ReassemblyError",
    "RoundParameters",
    "SEALBYTES",
    "SigningKeyPair",
    "Sum2Payload",
    "SumPayload",
    "Tag",
    "UpdatePayload",
    "WrongCoordinatorKeyError",
    "decode_header",
    "decode_local_seed_dict",
    "decode_message",
    "decode_payload",
    "decode_sum_dict",
    "decode_update_seed_dict",
    "encode_local_seed_dict",
    "encode_message",
    "encode_model",
    "encode_sum_dict",
    "encode_update_seed_dict",
    "is_eligible",
    "open_sealed",
    "seal",
    "sha256",
    "sign",
    "split_payload",
    "sum_signature",
    "update_signature",
    "verify",
]
