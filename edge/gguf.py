"""Check a GGUF file's structure before llama.cpp sees it.

llama.cpp may crash in native code on a file that is not GGUF, or fail on a truncated one
with a message that names neither the cause nor the fix. This reads the header and the
tensor infos (never the tensor data) and checks that the file is long enough to hold
every tensor.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import IO

from edge.errors import ModelCorrupt, ModelNotFound

__all__ = ["GGUF_MAGIC", "check_gguf_header"]

GGUF_MAGIC = b"GGUF"
_CHUNK = 1 << 20

# The GGUF layout (llama.cpp's gguf.cpp; v2 and v3, little-endian): magic, version (u32),
# tensor count and metadata count (u64); then the metadata key/values, the tensor infos
# (name, n_dims, dims, ggml type, offset) and, aligned to `general.alignment` (default
# 32), the tensor data. Strings are a u64 length and the bytes.
_GGUF_VERSIONS = (2, 3)
_GGUF_STRING, _GGUF_ARRAY = 8, 9
_GGUF_SCALAR_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # value type -> size
_GGUF_UINT32 = 4
_GGML_MAX_DIMS = 4
# ggml tensor type -> (values per block, bytes per block), as ggml's type traits (and
# gguf-py's GGML_QUANT_SIZES) give them. A type missing here is skipped by the size
# check, not refused: a newer llama.cpp may know it.
_GGML_BLOCKS = {
    0: (1, 4), 1: (1, 2), 30: (1, 2), 28: (1, 8),  # F32 F16 BF16 F64
    24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8),  # I8 I16 I32 I64
    2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),  # Q4_0 Q4_1 Q5_0 Q5_1 Q8_0
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),  # Q2_K..Q8_K
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110),  # IQ2_XXS..IQ3_S
    22: (256, 82), 23: (256, 136), 29: (256, 56),  # IQ2_S IQ4_XS IQ1_M
    34: (256, 54), 35: (256, 66), 39: (32, 17), 40: (64, 36), 41: (128, 18),  # TQ1_0 TQ2_0 MXFP4 NVFP4 Q1_0
}
_COPY_AGAIN = "copy or download the file again"


class _Short(Exception):
    """The file ends before the part of the header being read."""


class _Bad(Exception):
    """The header holds a value no GGUF writer produces."""


class _HeadReader:
    """Reads a GGUF file's head front to back without reading past its end (a skip
    moves the position; tensor data is never read)."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        self.f, self.size, self.pos = f, size, 0

    def _reserve(self, n: int, what: str) -> None:
        if n > self.size - self.pos:
            raise _Short(f"{what} at byte {self.pos} needs {n} bytes, {self.size - self.pos} remain")

    def take(self, n: int, what: str) -> bytes:
        self._reserve(n, what)
        data = self.f.read(n)
        if len(data) != n:  # the file shrank while being read
            raise _Short(f"{what} at byte {self.pos}: the file ended early")
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        self._reserve(n, what)
        self.f.seek(n, os.SEEK_CUR)
        self.pos += n

    def u32(self, what: str) -> int:
        return int.from_bytes(self.take(4, what), "little")

    def u64(self, what: str) -> int:
        return int.from_bytes(self.take(8, what), "little")

    def count(self, what: str, min_bytes_each: int) -> int:
        """A u64 count of items that each take at least `min_bytes_each` bytes; a count
        the rest of the file cannot hold is refused here, before any loop over it."""
        n = self.u64(what)
        if n * min_bytes_each > self.size - self.pos:
            raise _Short(f"{what} at byte {self.pos - 8} is {n}, more than the remaining "
                         f"{self.size - self.pos} bytes can hold")
        return n

    def name(self, what: str) -> str:
        """A key or a tensor name (ggml caps tensor names at 64 bytes; no key is near 64 KiB)."""
        n = self.count(f"the length of {what}", 1)
        if n > 1 << 16:
            raise _Bad(f"{what} at byte {self.pos - 8} is {n} bytes long")
        return self.take(n, what).decode("utf-8", "replace")

    def _skip_strings(self, n: int, what: str) -> None:
        # The hot loop (a vocabulary is one array of 50,000 to 250,000 strings): locals
        # only, about 0.3 us a string.
        read, seek, pos, size = self.f.read, self.f.seek, self.pos, self.size
        for i in range(n):
            head = read(8)
            length = int.from_bytes(head, "little")
            if len(head) != 8 or length > size - pos - 8:
                self.pos = pos
                raise _Short(f"string #{i} of {what} at byte {pos} runs past the end of the file")
            seek(length, os.SEEK_CUR)
            pos += 8 + length
        self.pos = pos

    def skip_value(self, vtype: int, what: str, depth: int = 0) -> None:
        if vtype in _GGUF_SCALAR_BYTES:
            self.skip(_GGUF_SCALAR_BYTES[vtype], what)
        elif vtype == _GGUF_STRING:
            self.skip(self.count(f"the length of {what}", 1), what)
        elif vtype == _GGUF_ARRAY and depth >= 4:
            raise _Bad(f"{what} nests arrays more than 4 deep")
        elif vtype == _GGUF_ARRAY:
            etype = self.u32(f"the element type of {what}")
            length = f"the length of array {what}"
            if etype in _GGUF_SCALAR_BYTES:  # numbers: one skip, however long the array
                self.skip(self.count(length, _GGUF_SCALAR_BYTES[etype]) * _GGUF_SCALAR_BYTES[etype], what)
            elif etype == _GGUF_STRING:
                self._skip_strings(self.count(length, 8), what)
            else:
                for _ in range(self.count(length, 8)):  # an array takes 12 bytes or more
                    self.skip_value(etype, what, depth + 1)
        else:
            raise _Bad(f"{what} has value type {vtype}, which GGUF does not define")


def _gguf_data_end(r: _HeadReader) -> int:
    """Walk the header; the byte at which the tensor data ends (where the header ends
    for a file without tensors)."""
    r.skip(4, "the magic")
    version = r.u32("the version")
    if version not in _GGUF_VERSIONS:
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        raise _Bad(f"GGUF version {version}" + (" (a big-endian file)" if swapped in _GGUF_VERSIONS else "")
                   + "; llama.cpp reads little-endian versions 2 and 3")
    n_tensors = r.count("the tensor count", 8 + 4 + 8 + 4 + 8)  # name, n_dims, a dim, type, offset
    n_kv = r.count("the metadata count", 8 + 4 + 1)  # key, type, a byte of value
    alignment = 32
    for i in range(n_kv):
        key = r.name(f"metadata key #{i}")
        vtype = r.u32(f"the type of {key!r}")
        if key == "general.alignment":
            if vtype != _GGUF_UINT32:
                raise _Bad(f"general.alignment has value type {vtype}, expected uint32")
            alignment = r.u32(key)
            if alignment == 0 or alignment & (alignment - 1):
                raise _Bad(f"general.alignment is {alignment}, not a power of two")
        else:
            r.skip_value(vtype, repr(key))
    tensor_end = 0
    for i in range(n_tensors):
        tensor_end = max(tensor_end, _tensor_end(r, i, alignment))
    data_start = -(-r.pos // alignment) * alignment
    return data_start + tensor_end if n_tensors else r.pos


def _tensor_end(r: _HeadReader, i: int, alignment: int) -> int:
    """One tensor info: where its data ends, relative to the data section (its offset
    alone when its type is unknown here)."""
    name = r.name(f"the name of tensor #{i}")
    n_dims = r.u32(f"the dimension count of tensor {name!r}")
    if not 1 <= n_dims <= _GGML_MAX_DIMS:
        raise _Bad(f"tensor {name!r} has {n_dims} dimensions (1 to {_GGML_MAX_DIMS})")
    dims = [r.u64(f"the dimensions of tensor {name!r}") for _ in range(n_dims)]
    ggml_type = r.u32(f"the type of tensor {name!r}")
    offset = r.u64(f"the offset of tensor {name!r}")
    if offset % alignment:
        raise _Bad(f"tensor {name!r} has offset {offset}, not a multiple of the alignment {alignment}")
    if any(d >= 1 << 63 for d in dims):
        raise _Bad(f"tensor {name!r} has dimensions {dims}")
    if ggml_type not in _GGML_BLOCKS:
        return offset
    block, block_bytes = _GGML_BLOCKS[ggml_type]
    if dims[0] % block:
        raise _Bad(f"tensor {name!r}: its first dimension {dims[0]} is not a multiple of its type's block ({block})")
    n = 1
    for d in dims:
        n *= d
    return offset + n // block * block_bytes


def check_gguf_header(path: Path, *, name: str = "", fix: str = _COPY_AGAIN) -> None:
    """Refuse a file that is not GGUF, or is a damaged or truncated one, before llama.cpp
    sees it (llama.cpp may crash in native code on it, or fail with a message that names
    neither cause nor fix). Walks the header and the tensor infos, never the tensor data
    (about 35 ms for a 50,000-token vocabulary), and checks that the file is long enough
    to hold every tensor. Raises ModelNotFound (unreadable) or ModelCorrupt, whose
    message names the model (`name`, when given) and ends with `fix`."""
    what = f"model {name!r}: file {path}" if name else f"model file {path}"
    try:
        with path.open("rb", buffering=_CHUNK) as f:
            magic = f.read(4)
            if magic != GGUF_MAGIC:
                raise ModelCorrupt(f"{what} is not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r}); {fix}")
            f.seek(0)
            reader = _HeadReader(f, os.fstat(f.fileno()).st_size)
            data_end = _gguf_data_end(reader)
    except OSError as exc:
        raise ModelNotFound(f"cannot read {what}: {exc.strerror or exc}") from exc
    except _Short as exc:
        raise ModelCorrupt(f"{what} is truncated or damaged: it is {reader.size} bytes and ends inside its GGUF "
                           f"header ({exc}); {fix}") from None
    except _Bad as exc:
        raise ModelCorrupt(f"{what} is not a valid GGUF file: {exc}; {fix}") from None
    if data_end > reader.size:
        raise ModelCorrupt(f"{what} is truncated: it is {reader.size} bytes, but its GGUF header places tensor "
                           f"data up to byte {data_end} ({data_end - reader.size} bytes missing); {fix}")
