"""Write a folder of images into an LMDB in our layout (see lmdb_format.py), atomically; no torch."""
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path

import lmdb

from .errors import DataError
from .images import IMAGE_EXTENSIONS, class_folders, decode_rgb, encode_png, fit_square, list_image_files
from .lmdb_format import FORMAT_NAME, FORMAT_VERSION, META_KEY, image_key

log = logging.getLogger(__name__)


@dataclass
class PrepareReport:
    """What `write_image_lmdb` wrote: image count and one message per skipped file."""

    count: int
    resolution: int
    skipped: list[str] = field(default_factory=list)
    classes: list[str] | None = None  # class_folders: the class names (label i = classes[i])
    labels: list[int] = field(default_factory=list)  # class_folders: the label of every written image


def _square_png(job: tuple[Path, int, bool]) -> tuple[bytes | None, str | None]:
    """(PNG bytes, None) of one file resized + center-cropped, or (None, error message)."""
    path, resolution, allow_upscale = job
    try:
        image = fit_square(decode_rgb(path, str(path)), resolution, str(path), allow_upscale=allow_upscale)
        return encode_png(image), None
    except DataError as error:
        return None, str(error)


def _encoded(files: list[Path], resolution: int, allow_upscale: bool, num_workers: int) -> Iterator:
    """`_square_png` of every file, in file order, in `num_workers` processes (0: here)."""
    jobs = [(path, resolution, allow_upscale) for path in files]
    if num_workers == 0:
        yield from map(_square_png, jobs)
        return
    with Pool(num_workers) as pool:
        yield from pool.imap(_square_png, jobs, chunksize=8)


def _fill(env: lmdb.Environment, files: list[Path], report: PrepareReport, *, skip_bad_images: bool,
          allow_upscale: bool, num_workers: int, commit_every: int, labels: list[int] | None = None) -> None:
    """Put every good file's PNG under keys 0.. and the metadata key last; commit every `commit_every`."""
    results = _encoded(files, report.resolution, allow_upscale, num_workers)
    txn = env.begin(write=True)
    try:
        for index, (png, error) in enumerate(results):
            if error is not None:
                if not skip_bad_images:
                    raise DataError(error)
                report.skipped.append(error)
                log.warning("skipped: %s", error)
                continue
            txn.put(image_key(report.count), png, append=True)
            report.count += 1
            if labels is not None:
                report.labels.append(labels[index])
            if report.count % commit_every == 0:
                txn.commit()
                txn = env.begin(write=True)
                log.info("%d / %d images written", report.count, len(files))
        if report.count == 0:
            raise DataError(f"all {len(files)} images were skipped; see the messages above")
        meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "count": report.count,
                "resolution": report.resolution}
        if report.classes is not None:
            meta |= {"classes": report.classes, "labels": report.labels}
        txn.put(META_KEY, json.dumps(meta).encode())
        txn.commit()
    finally:
        txn.abort()  # no-op after commit
        results.close()  # stops the worker pool early on failure


def write_image_lmdb(
    input_dir: str | Path,
    output_path: str | Path,
    *,
    resolution: int,  # side of the stored square images
    skip_bad_images: bool = False,  # skip unreadable / too-small files (counted and logged) instead of failing
    allow_upscale: bool = False,  # upscale images whose shorter side is below `resolution`
    overwrite: bool = False,  # replace an existing output
    num_workers: int = 0,  # decode/resize/encode processes (0: in this process)
    commit_every: int = 1000,  # images per write transaction
    class_folders_as_labels: bool = False,  # every subfolder of input_dir is a class: store the labels (ImageFolder)
) -> PrepareReport:
    """Every image under `input_dir` (recursive, sorted paths), resized (shorter side) + center-cropped to
    `resolution`, as PNG bytes under keys 00000000.. plus a metadata key. Writes to a temporary sibling
    directory and renames it to `output_path` only when complete, so a failure leaves no partial output."""
    input_dir, output_path = Path(input_dir), Path(output_path)
    if not input_dir.is_dir():
        raise DataError(f"input folder {input_dir} does not exist; pass input=<folder of images>")
    labels, classes = None, None
    if class_folders_as_labels:
        folders = class_folders(input_dir)
        per_class = [list_image_files(folder) for folder in folders]
        if not folders or not all(per_class):
            empty = next((folder.name for folder, found in zip(folders, per_class) if not found), None)
            raise DataError(f"class_folders=true: {input_dir} has no class subfolders" if empty is None else
                            f"class_folders=true: class subfolder {empty!r} of {input_dir} holds no images")
        files = [path for found in per_class for path in found]
        labels = [label for label, found in enumerate(per_class) for _ in found]
        classes = [folder.name for folder in folders]
    else:
        files = list_image_files(input_dir)
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {input_dir}; pass input=<folder of images>")
    if output_path.exists() and not overwrite:
        raise DataError(f"output {output_path} already exists; delete it or pass overwrite=true")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    temp_path = output_path.parent / f".{output_path.name}.tmp-{os.getpid()}"
    shutil.rmtree(temp_path, ignore_errors=True)
    map_size = len(files) * (resolution * resolution * 3 * 2 + 4096) + (64 << 20)  # sparse file; PNG < 2x raw
    report = PrepareReport(count=0, resolution=resolution, classes=classes)
    try:
        env = lmdb.open(str(temp_path), map_size=map_size, subdir=True)
        try:
            _fill(env, files, report, skip_bad_images=skip_bad_images, allow_upscale=allow_upscale,
                  num_workers=num_workers, commit_every=commit_every, labels=labels)
        finally:
            env.close()
        if output_path.exists():  # overwrite=True
            shutil.rmtree(output_path) if output_path.is_dir() else output_path.unlink()
        temp_path.rename(output_path)
    except BaseException:
        shutil.rmtree(temp_path, ignore_errors=True)
        raise
    if report.skipped:
        log.warning("skipped %d of %d images under %s", len(report.skipped), len(files), input_dir)
    log.info("wrote %d images (%dpx) to %s", report.count, resolution, output_path)
    return report
