"""A small reader/writer for the safetensors format (json + struct + numpy, no extra packages).

Layout of a .safetensors file:
  8 bytes   little-endian uint64 N = length of the JSON header
  N bytes   UTF-8 JSON: {"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
                         optionally "__metadata__": {str: str}}
  rest      the raw little-endian tensor bytes; data_offsets are relative to the start of this region.
"""

import json
import os
import struct

import numpy as np

# safetensors dtype tag -> numpy dtype (little-endian). BF16 is handled separately.
_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
# (numpy kind, itemsize) -> tag, so any byte order of a supported dtype is accepted on write.
_TAGS = {(v.kind, v.itemsize): k for k, v in _DTYPES.items()}


def read_header(path):
    """Returns (header dict without __metadata__, metadata dict, byte offset of the data region)."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: too short to be a safetensors file")
        (n,) = struct.unpack("<Q", raw)
        header = json.loads(f.read(n).decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    return header, meta, 8 + n


def load_file(path):
    """Reads every tensor of one .safetensors file into a dict name -> numpy array (native dtype;
    BF16 is widened to float32 exactly)."""
    header, _, start = read_header(path)
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read()
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        shape = tuple(info["shape"])
        buf = data[b:e]
        tag = info["dtype"]
        if tag == "BF16":
            u16 = np.frombuffer(buf, dtype="<u2").astype(np.uint32)
            arr = (u16 << 16).view(np.float32)
        elif tag in _DTYPES:
            arr = np.frombuffer(buf, dtype=_DTYPES[tag])
        else:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {tag}")
        count = int(np.prod(shape)) if shape else 1
        if arr.size != count:
            raise ValueError(f"{path}: tensor {name}: {arr.size} elements for shape {list(shape)}")
        out[name] = arr.reshape(shape).copy()
    return out


def save_file(tensors, path, metadata=None):
    """Writes dict name -> numpy array (F64/F32/F16/I64/I32/...) as one .safetensors file.
    Tensors are stored in sorted name order; the header is space-padded to a multiple of 8 bytes."""
    names = sorted(tensors)
    header = {}
    blobs = []
    offset = 0
    for name in names:
        arr = np.ascontiguousarray(tensors[name])
        tag = _TAGS.get((arr.dtype.kind, arr.dtype.itemsize))
        if tag is None:
            raise ValueError(f"tensor {name}: unsupported numpy dtype {arr.dtype}")
        blob = arr.astype(_DTYPES[tag], copy=False).tobytes()
        header[name] = {"dtype": tag, "shape": list(arr.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)


def load_checkpoint_tensors(folder):
    """Loads all tensors of a checkpoint folder: `model.safetensors`, or the shards listed in
    `model.safetensors.index.json` (its "weight_map": name -> shard file)."""
    single = os.path.join(folder, "model.safetensors")
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        out = {}
        for shard in sorted(set(weight_map.values())):
            tensors = load_file(os.path.join(folder, shard))
            for name, arr in tensors.items():
                if weight_map.get(name) == shard:
                    out[name] = arr
        missing = sorted(n for n in weight_map if n not in out)
        if missing:
            raise ValueError(f"{index}: tensors listed but not found in their shard: {missing[:5]}")
        return out
    if os.path.exists(single):
        return load_file(single)
    raise FileNotFoundError(f"{folder}: neither model.safetensors nor model.safetensors.index.json")
