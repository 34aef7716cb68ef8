"""Images from an LMDB: ours (see lmdb_format.py; written by `python -m src.prepare_lmdb`), or,
detected when our metadata key is absent, other exports read directly:
    LSUN export:         keys = image ids, values = encoded webp/jpeg bytes; "first N" = first N keys in
                         LMDB (sorted) order, as torchvision's LSUN class lists them.
    NVAE / DDGAN export: keys = b"0".."N-1", values = encoded bytes or raw RGB uint8 (size*size*3 bytes).
"""
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import lmdb
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .errors import DataError
from .images import check_large_enough, decode_rgb, fit_square, read_image_size
from .lmdb_format import FORMAT_NAME, FORMAT_VERSION, META_KEY, image_key, prepare_hint
from .tensors import NO_LABEL, pil_to_model_tensor


def open_lmdb(path: Path) -> lmdb.Environment:
    """Read-only environment for many concurrent readers (no lock file writes, no readahead)."""
    try:
        return lmdb.open(str(path), subdir=path.is_dir(), readonly=True, lock=False, readahead=False, meminit=False)
    except lmdb.Error as error:
        raise DataError(f"cannot open LMDB {path}: {error}; rebuild it with {prepare_hint(path)}") from error


# LMDB forbids opening one environment twice in a process, and a forked child may not reopen one its
# parent holds open. So each process keeps one shared handle per LMDB, opened on first use, and closes
# them all just before any fork (DataLoader workers): parent and children then reopen lazily.
_shared_envs: dict[tuple[int, int], lmdb.Environment] = {}  # (st_dev, st_ino) of the data file -> handle


def shared_env(path: Path) -> lmdb.Environment:
    """This process's read-only handle on the LMDB at `path`, opened on first use."""
    try:
        stat = (path / "data.mdb" if path.is_dir() else path).stat()
    except OSError as error:
        raise DataError(f"LMDB {path} is missing ({error}); rebuild it with {prepare_hint(path)}") from error
    identity = (stat.st_dev, stat.st_ino)
    if identity not in _shared_envs:
        _shared_envs[identity] = open_lmdb(path)
    return _shared_envs[identity]


def close_shared_envs() -> None:
    """Close every handle this process opened (runs before each fork)."""
    while _shared_envs:
        _shared_envs.popitem()[1].close()


os.register_at_fork(before=close_shared_envs)


@dataclass(frozen=True)
class LMDBLayout:
    """Where the images of an LMDB are and how they are stored."""

    kind: str  # "ddgan" (our PNGs), "encoded" (LSUN / NVAE encoded bytes) or "raw_rgb" (NVAE raw pixels)
    keys: list[bytes]  # image keys in dataset order, already cut to max_images
    resolution: int | None  # square side when known from metadata or raw size, else None
    classes: list[str] | None = None  # ours, written from class subfolders: the class names
    labels: list[int] | None = None  # ... and the label of each image (in key order)


def _our_layout(meta: bytes, path: Path, limit: float) -> LMDBLayout:
    """Our layout from its metadata value; DataError if the metadata is not ours."""
    try:
        info = json.loads(meta)
        count, resolution = int(info["count"]), int(info["resolution"])
        is_ours = info["format"] == FORMAT_NAME and info["version"] == FORMAT_VERSION
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(f"LMDB {path} has unreadable metadata {bytes(meta[:80])!r}; "
                        f"rebuild it with {prepare_hint(path)}") from error
    if not is_ours:
        raise DataError(f"LMDB {path} has metadata for format {info['format']!r} version {info['version']!r}, "
                        f"not {FORMAT_NAME!r} version {FORMAT_VERSION}; rebuild it with {prepare_hint(path)}")
    kept = int(min(count, limit))
    labels = info.get("labels")
    return LMDBLayout("ddgan", [image_key(i) for i in range(kept)], resolution, info.get("classes"),
                      labels[:kept] if labels is not None else None)


def _export_layout(txn: lmdb.Transaction, path: Path, limit: float) -> LMDBLayout:
    """Layout of an LMDB without our metadata: LSUN (id keys) or NVAE (decimal keys); DataError if neither."""
    cursor = txn.cursor()
    if not cursor.first():
        raise DataError(f"LMDB {path} is empty; rebuild it with {prepare_hint(path)}")
    first_key, first_value = cursor.key(), cursor.value()
    num_entries = txn.stat()["entries"]
    if txn.get(b"0") is not None and txn.get(str(num_entries - 1).encode()) is not None:
        keys = [str(i).encode() for i in range(int(min(num_entries, limit)))]  # NVAE: b"0".."N-1", numeric order
        sample = txn.get(b"0")
    else:
        keys = []  # LSUN: first `limit` ids in LMDB (sorted) order
        for key in cursor.iternext(keys=True, values=False):
            if len(keys) >= limit:
                break
            keys.append(key)
        sample = first_value
    try:
        read_image_size(sample, "")
        return LMDBLayout("encoded", keys, None)
    except DataError:
        side = math.isqrt(len(sample) // 3)
        if keys[0] == b"0" and len(sample) > 0 and side * side * 3 == len(sample):
            return LMDBLayout("raw_rgb", keys, side)
    raise DataError(
        f"LMDB {path} is in an unknown format: no {META_KEY.decode()} metadata key, and key {first_key[:40]!r} "
        f"holds {len(first_value)} bytes that are neither an encoded image nor raw RGB; "
        f"rebuild it with {prepare_hint(path)}"
    )


def inspect_lmdb(path: Path, max_images: int | None = None) -> LMDBLayout:
    """Detect the layout of the LMDB at `path`; DataError (naming `path`) if it is empty or of unknown format."""
    limit = max_images if max_images is not None else math.inf
    with shared_env(path).begin(write=False) as txn:
        meta = txn.get(META_KEY)
        return _our_layout(meta, path, limit) if meta is not None else _export_layout(txn, path, limit)


class LMDBImageDataset(Dataset):
    """Items (image (3, S, S) float32 in [-1, 1], label) from an LMDB, S = image_size (resize + center crop); the
    label is the stored one (ours, written with class_folders=true), else -1.

    The dataset holds no LMDB handle (it pickles to workers as paths and keys): each process opens its
    own on first read through `shared_env`, so a handle is never shared across processes.
    """

    def __init__(self, path: Path, *, image_size: int, allow_upscale: bool = False,
                 max_images: int | None = None) -> None:
        self.path = Path(path)
        self.image_size = image_size
        self.allow_upscale = allow_upscale
        self.layout = inspect_lmdb(self.path, max_images)
        if self.layout.resolution is not None and self.layout.resolution < image_size and not allow_upscale:
            raise DataError(
                f"LMDB {self.path} holds {self.layout.resolution}px images, smaller than image_size={image_size}; "
                f"rebuild it with {prepare_hint(self.path, image_size)} or set data.allow_upscale=true"
            )
        if self.layout.kind == "encoded":  # no stored resolution: check the first image now, not mid-epoch
            key = self.layout.keys[0]
            size = read_image_size(self._read(key), self._name(key))
            check_large_enough(size, image_size, self._name(key), allow_upscale=allow_upscale)

    def __len__(self) -> int:
        return len(self.layout.keys)

    def _name(self, key: bytes) -> str:
        return f"key {key.decode(errors='replace')!r} of {self.path}"

    def _read(self, key: bytes) -> bytes:
        with shared_env(self.path).begin(write=False) as txn:
            value = txn.get(key)
        if value is None:
            raise DataError(f"{self._name(key)} is missing; the LMDB is incomplete, rebuild it with "
                            f"{prepare_hint(self.path)}")
        return value

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        key = self.layout.keys[index]
        value = self._read(key)
        if self.layout.kind == "raw_rgb":
            side = self.layout.resolution
            image = Image.fromarray(np.frombuffer(value, dtype=np.uint8).reshape(side, side, 3))
        else:
            image = decode_rgb(value, self._name(key))
        image = fit_square(image, self.image_size, self._name(key), allow_upscale=self.allow_upscale)
        return pil_to_model_tensor(image), NO_LABEL if self.layout.labels is None else self.layout.labels[index]
