"""Resource limits of the local coordinator (extensions: the original has none of these).

The original accepts POST bodies of any size and keeps incomplete multipart messages forever.
Here every buffer is bounded, with defaults derived from the settings so that no faithful
participant ever hits a limit: the body limit is the size of the largest message the round's
configuration allows (an Update with one seed per possible sum participant) plus slack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .settings import Settings

__all__ = ["Limits", "largest_message_size"]

_SEALBYTES = 48
_HEADER = 136
_SIGNATURE = 64
_SEED_DICT_ENTRY = 32 + 80
_SLACK = 4096
_MIB = 1024 * 1024


def largest_message_size(settings: Settings) -> int:
    """Sealed size of the largest valid message: an Update with ``max_sum_count`` seeds."""
    vect = settings.mask_config.vect
    unit = settings.mask_config.unit
    mask_object = 8 + settings.model_length * vect.bytes_per_number + 4 + unit.bytes_per_number
    update = (
        _HEADER + 2 * _SIGNATURE + mask_object + 4 + _SEED_DICT_ENTRY * settings.pet.max_sum_count
    )
    sum2 = _HEADER + _SIGNATURE + mask_object
    sum_ = _HEADER + _SIGNATURE + 32
    return max(update, sum2, sum_) + _SEALBYTES


@dataclass(frozen=True)
class Limits:
    """Bounds on what clients can make the coordinator hold. ``None`` means "derive".

    * ``max_body_size``: POST bodies above this get HTTP 413 (default: the largest valid
      message plus 4 KiB).
    * ``max_connections``: open HTTP connections; when full, the connection idle the longest
      is closed for a new one (a new one is closed at once if none is idle).
    * ``keep_alive_timeout``: an idle connection is closed after this many seconds (above the
      original participant's longest poll interval of 10 s, so pooled connections stay).
    * ``worker_threads``: the threads that handle complete requests (the front end has one
      more thread that accepts and reads; see ``coordinator/frontend.py``).
    * ``header_timeout``: a request header (and a TLS handshake) must arrive within this many
      seconds of its first byte; ``body_timeout``: a body within this many seconds of its
      header; ``write_timeout``: a reply must be taken within this many seconds.
    * ``max_header_bytes``: a larger request header gets 431 (414 for a request line alone).
    * ``multipart_*``: the reassembler's bounds (incomplete messages in total and per sender,
      buffered bytes, idle age in seconds); default bytes ``max(64 MiB, 8 × body limit)``
      capped at 1 GiB.
    * ``inflight_grace``: how long the end of a phase waits for messages that arrived while
      it was open and are still being processed (decryption, signature check).
    """

    max_body_size: Optional[int] = None
    max_connections: int = 8192
    keep_alive_timeout: float = 120.0
    worker_threads: int = 16
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    write_timeout: float = 60.0
    max_header_bytes: int = 65536
    multipart_max_messages: int = 1024
    multipart_max_messages_per_participant: int = 4
    multipart_max_bytes: Optional[int] = None
    multipart_max_age: float = 60.0
    inflight_grace: float = 10.0

    def __post_init__(self) -> None:
        if self.max_body_size is not None and self.max_body_size < 1:
            raise ValueError("max_body_size must be positive")
        if self.max_connections < 1 or self.keep_alive_timeout <= 0:
            raise ValueError("max_connections and keep_alive_timeout must be positive")
        if self.worker_threads < 1 or self.max_header_bytes < 1024:
            raise ValueError("worker_threads must be positive and max_header_bytes >= 1024")
        if min(self.header_timeout, self.body_timeout, self.write_timeout) <= 0:
            raise ValueError("header_timeout, body_timeout and write_timeout must be positive")
        if self.multipart_max_bytes is not None and self.multipart_max_bytes < 1:
            raise ValueError("multipart_max_bytes must be positive")
        if self.inflight_grace < 0:
            raise ValueError("inflight_grace must not be negative")

    def body_limit(self, settings: Settings) -> int:
        if self.max_body_size is not None:
            return self.max_body_size
        return largest_message_size(settings) + _SLACK

    def multipart_bytes(self, settings: Settings) -> int:
        if self.multipart_max_bytes is not None:
            return self.multipart_max_bytes
        return min(1024 * _MIB, max(64 * _MIB, 8 * self.body_limit(settings)))
