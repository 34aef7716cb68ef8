"""Our LMDB layout: the keys and metadata `lmdb_writer` writes and `lmdb_dataset` reads (no torch).

    b"00000000", b"00000001", ...   PNG bytes of image i (RGB, resolution x resolution), i in sorted-file order
    b"__ddgan_meta__"               UTF-8 JSON {"format": "ddgan-image-lmdb", "version": 1,
                                                "count": N, "resolution": R}, and for a labelled set (written
                                                from class subfolders) "classes": [names], "labels": [N labels]
The metadata key sorts after every image key and tells our LMDBs from other exports.
"""
from pathlib import Path

META_KEY = b"__ddgan_meta__"
FORMAT_NAME = "ddgan-image-lmdb"
FORMAT_VERSION = 1


def image_key(index: int) -> bytes:
    """Key of image `index`: 8-digit zero-padded decimal."""
    return f"{index:08d}".encode()


def prepare_hint(path: Path | str, resolution: int | str = "<resolution>") -> str:
    """The command that (re)builds an LMDB at `path` in our layout."""
    return f"python -m src.prepare_lmdb input=<image folder> output={path} resolution={resolution}"


def is_lmdb(path: Path) -> bool:
    """True for an LMDB directory (holding data.mdb) or a single-file LMDB."""
    return (path / "data.mdb").is_file() if path.is_dir() else path.is_file()
