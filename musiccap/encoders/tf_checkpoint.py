"""Read TensorFlow tensor-bundle checkpoints (``<prefix>.index`` + ``<prefix>.data-*``) with numpy alone.

A checkpoint written by ``tf.train.Saver`` (V2 format) is two kinds of file:

* ``<prefix>.index`` — an SSTable (LevelDB's immutable sorted table). Its keys are the variable
  names; each value is a serialized ``BundleEntryProto`` saying the dtype, the shape, which data
  shard holds the tensor and at which byte offset. The empty key holds the ``BundleHeaderProto``.
* ``<prefix>.data-00000-of-0000N`` — the tensors' raw little-endian bytes, back to back.

Only the parts of both formats that TensorFlow writes for a checkpoint are implemented: uncompressed
blocks, numeric dtypes, unpartitioned variables. Anything else raises ``ValueError`` rather than
returning wrong numbers.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48  # two block handles padded to 40 bytes + 8-byte magic
_BLOCK_TRAILER_SIZE = 5  # 1-byte compression type + 4-byte masked crc32c

# tensorflow/core/framework/types.proto -> numpy (little-endian, as the bundle stores them)
_DTYPES = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """Decode one protobuf message into (field number, value) pairs; values are ints or bytes."""
    fields = []
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            value, pos = _varint(buf, pos)
        elif wire_type == 1:
            value = struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wire_type == 2:
            length, pos = _varint(buf, pos)
            value = buf[pos : pos + length]
            pos += length
        elif wire_type == 5:
            value = struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        fields.append((number, value))
    return fields


@dataclass(frozen=True)
class BundleEntry:
    """Where one tensor lives (``BundleEntryProto`` in tensor_bundle.proto)."""

    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    has_slices: bool

    @classmethod
    def parse(cls, buf: bytes) -> BundleEntry:
        dtype, shard_id, offset, size, has_slices = 0, 0, 0, 0, False
        shape: list[int] = []
        for number, value in _proto_fields(buf):
            if number == 1:
                dtype = value
            elif number == 2:  # TensorShapeProto: repeated Dim dim = 2 {int64 size = 1}
                for dim_number, dim in _proto_fields(value):
                    if dim_number == 2:
                        size_fields = [v for n, v in _proto_fields(dim) if n == 1]
                        shape.append(size_fields[0] if size_fields else 0)
            elif number == 3:
                shard_id = value
            elif number == 4:
                offset = value
            elif number == 5:
                size = value
            elif number == 7:
                has_slices = True
        return cls(dtype, tuple(shape), shard_id, offset, size, has_slices)


def _read_block(data: bytes, handle: bytes) -> bytes:
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    compression = data[offset + size]
    if compression != 0:
        raise ValueError(f"compressed SSTable block (type {compression}) is not supported")
    return data[offset : offset + size]


def _block_items(block: bytes) -> list[tuple[bytes, bytes]]:
    """Entries of one SSTable block: keys are prefix-compressed against the previous key."""
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * num_restarts
    items = []
    key = b""
    pos = 0
    while pos < end:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_length, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        items.append((key, block[pos : pos + value_length]))
        pos += value_length
    return items


def _table_items(path: Path) -> list[tuple[bytes, bytes]]:
    """All (key, value) pairs of an SSTable, in key order."""
    data = path.read_bytes()
    if len(data) < _FOOTER_SIZE or struct.unpack_from("<Q", data, len(data) - 8)[0] != _TABLE_MAGIC:
        raise ValueError(f"{path} is not an SSTable (bad magic number)")
    footer = data[len(data) - _FOOTER_SIZE :]
    _, pos = _varint(footer, 0)  # skip the metaindex handle (offset, size): no filters are needed
    _, pos = _varint(footer, pos)
    index_block = _read_block(data, footer[pos:])
    return [
        item for _, handle in _block_items(index_block) for item in _block_items(_read_block(data, handle))
    ]


def read_index(index_path: str | Path) -> tuple[int, dict[str, BundleEntry]]:
    """Number of data shards and variable name -> ``BundleEntry`` for a ``.index`` file."""
    num_shards = 1
    entries = {}
    for key, value in _table_items(Path(index_path)):
        if key == b"":  # BundleHeaderProto: int32 num_shards = 1
            num_shards = next((v for n, v in _proto_fields(value) if n == 1), 1)
        else:
            entries[key.decode("utf-8")] = BundleEntry.parse(value)
    return num_shards, entries


def load_checkpoint(prefix: str | Path) -> dict[str, np.ndarray]:
    """Load every numeric tensor of a TF V2 checkpoint.

    ``prefix`` is what ``Saver.save`` was given: ``model/ckpt-100`` for ``model/ckpt-100.index``; for
    a checkpoint saved into a directory as ``dir/`` (musicnn's case, files ``dir/.index``), pass ``dir/``.
    """
    prefix = str(prefix)
    num_shards, entries = read_index(prefix + ".index")
    shards: dict[int, np.memmap] = {}
    tensors = {}
    for name, entry in entries.items():
        if entry.has_slices:
            raise ValueError(f"partitioned variable {name!r} is not supported")
        if entry.dtype not in _DTYPES:
            raise ValueError(f"tensor {name!r} has unsupported dtype enum {entry.dtype}")
        if entry.shard_id not in shards:
            shards[entry.shard_id] = np.memmap(
                f"{prefix}.data-{entry.shard_id:05d}-of-{num_shards:05d}", dtype=np.uint8, mode="r"
            )
        dtype = _DTYPES[entry.dtype]
        count = int(np.prod(entry.shape)) if entry.shape else 1
        if count * dtype.itemsize != entry.size:
            raise ValueError(f"tensor {name!r}: {entry.size} bytes for shape {entry.shape} of {dtype}")
        raw = shards[entry.shard_id][entry.offset : entry.offset + entry.size]
        tensors[name] = np.frombuffer(raw.tobytes(), dtype=dtype).reshape(entry.shape).copy()
    return tensors
