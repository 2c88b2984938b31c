"""arq's job serializer: msgpack through msgspec, never pickle.

A failed job's result is an exception; it is stored as its ``repr`` so the jobs API can show it.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["deserialize", "serialize"]


def _encode_extra(obj: Any) -> Any:
    if isinstance(obj, BaseException):
        return repr(obj)
    raise NotImplementedError(f"cannot serialize {type(obj).__name__}")


_encoder = msgspec.msgpack.Encoder(enc_hook=_encode_extra)
_decoder = msgspec.msgpack.Decoder()


def serialize(obj: dict[str, Any]) -> bytes:
    return _encoder.encode(obj)


def deserialize(data: bytes) -> dict[str, Any]:
    result: dict[str, Any] = _decoder.decode(data)
    return result
