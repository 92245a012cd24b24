"""Bounded little-endian fields inside a chunk payload (shapes, flags, small integer arrays).

Codecs describe their parameters with these two classes instead of ad-hoc ``struct`` calls, so every
field a decoder reads is range-checked and a short payload raises :class:`~.errors.TruncatedError`.
"""

from __future__ import annotations

import struct

import numpy as np

from .errors import FormatError, LimitError, TruncatedError


class PayloadWriter:
    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def uint(self, value: int) -> "PayloadWriter":
        """Unsigned LEB128 varint."""
        if value < 0:
            raise ValueError(f"uint field must be >= 0, got {value}")
        out = bytearray()
        while True:
            byte, value = value & 0x7F, value >> 7
            out.append(byte | (0x80 if value else 0))
            if not value:
                break
        self._parts.append(bytes(out))
        return self

    def sint(self, value: int) -> "PayloadWriter":
        """Signed varint, zig-zag mapped so small magnitudes stay short."""
        return self.uint(2 * value if value >= 0 else -2 * value - 1)

    def f64(self, value: float) -> "PayloadWriter":
        self._parts.append(struct.pack("<d", value))
        return self

    def blob(self, data: bytes) -> "PayloadWriter":
        self.uint(len(data))
        self._parts.append(bytes(data))
        return self

    def u8_array(self, values: np.ndarray) -> "PayloadWriter":
        values = np.asarray(values)
        if values.size and (values.min() < 0 or values.max() > 255):
            raise ValueError("u8_array values must lie in 0..255")
        return self.blob(values.astype(np.uint8).tobytes())

    def to_bytes(self) -> bytes:
        return b"".join(self._parts)


class PayloadReader:
    def __init__(self, data: bytes, what: str = "payload") -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._what = what

    def _take(self, n: int) -> memoryview:
        if self._pos + n > len(self._data):
            raise TruncatedError(f"{self._what} ends early: needs {n} more bytes at offset {self._pos}")
        view = self._data[self._pos : self._pos + n]
        self._pos += n
        return view

    def uint(self, max_value: int) -> int:
        value, shift = 0, 0
        while True:
            byte = self._take(1)[0]
            value |= (byte & 0x7F) << shift
            shift += 7
            if value > max_value:
                raise LimitError(f"{self._what}: field value exceeds {max_value} at offset {self._pos}")
            if not byte & 0x80:
                return value
            if shift > 70:
                raise FormatError(f"{self._what}: varint too long at offset {self._pos}")

    def sint(self, max_magnitude: int) -> int:
        z = self.uint(2 * max_magnitude + 1)
        return z // 2 if z % 2 == 0 else -(z + 1) // 2

    def f64(self) -> float:
        (value,) = struct.unpack("<d", self._take(8))
        if value != value or value in (float("inf"), float("-inf")):
            raise FormatError(f"{self._what}: non-finite float at offset {self._pos - 8}")
        return value

    def blob(self, max_len: int) -> bytes:
        return bytes(self._take(self.uint(max_len)))

    def u8_array(self, length: int) -> np.ndarray:
        data = self.blob(length)
        if len(data) != length:
            raise FormatError(f"{self._what}: expected {length} bytes, got {len(data)}")
        return np.frombuffer(data, dtype=np.uint8).copy()

    def done(self) -> None:
        if self._pos != len(self._data):
            raise FormatError(f"{self._what}: {len(self._data) - self._pos} unexpected trailing bytes")
