"""Any folder tree of images at image_size x image_size (with resize: shorter side resized + center crop), labels -1;
with conditional=true, torchvision's ImageFolder layout: every subfolder of data_dir is a class (sorted names give
labels 0..n-1) and its images (searched recursively) carry its label.

Bad files are found when the datamodule is set up, before training (src.train sets it up before it builds the
model): every file's header is read (cheap: no pixel decoding), so unreadable files, images of another size
(without resize) and images smaller than image_size (with resize) fail at once with the file named, or, with
skip_bad_images, are dropped and counted. A file whose header is fine but whose pixel data
is truncated can only fail when decoded; then the loader raises a DataError naming it, or with
skip_bad_images logs it and returns the next readable image instead.
"""
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Unpack

import torch
from torch.utils.data import Dataset

from .datamodule import ImageDataModule, ImageSettings
from .errors import DataError
from .images import (
    IMAGE_EXTENSIONS,
    check_size,
    class_folders,
    decode_rgb,
    fit_square,
    list_image_files,
    read_image_size,
)
from .tensors import NO_LABEL, pil_to_model_tensor

log = logging.getLogger(__name__)
MAX_LOAD_RETRIES = 16  # with skip_bad_images: neighbours tried after an undecodable file


@dataclass
class FolderScan:
    """The usable image files of a folder and one message per skipped file."""

    files: list[Path]
    skipped: list[str] = field(default_factory=list)


def scan_image_folder(root: Path, image_size: int, *, skip_bad_images: bool, allow_upscale: bool,
                      max_images: int | None, resize: bool) -> FolderScan:
    """Check the headers of the image files under `root` (sorted), keeping the first `max_images` usable ones.

    Raises DataError naming the first unreadable or unfitting file (see check_size), unless skip_bad_images.
    """
    scan = FolderScan(files=[])
    for path in list_image_files(root):
        if max_images is not None and len(scan.files) >= max_images:
            break
        try:
            size = read_image_size(path, str(path))
            check_size(size, image_size, str(path), resize=resize, allow_upscale=allow_upscale)
        except DataError as error:
            if not skip_bad_images:
                raise
            scan.skipped.append(str(error))
            continue
        scan.files.append(path)
    if scan.skipped:
        log.warning("skipped %d bad image files under %s, first: %s", len(scan.skipped), root, scan.skipped[0])
    if not scan.files:
        found = f"no usable image files ({len(scan.skipped)} found, all skipped)" if scan.skipped else "no image files"
        raise DataError(f"data.data_dir={root} holds {found}, subfolders included (looked for {', '.join(IMAGE_EXTENSIONS)}); "
                        "point data.data_dir at a folder of images")
    return scan


class ImageFolderDataset(Dataset):
    """Items (image (3, S, S) float32 in [-1, 1], label) from image files, S = image_size; labels -1 unless given."""

    def __init__(self, files: list[Path], *, image_size: int, allow_upscale: bool = False,
                 skip_bad_images: bool = False, labels: list[int] | None = None) -> None:
        self.files = files
        self.labels = labels
        self.image_size = image_size
        self.allow_upscale = allow_upscale
        self.skip_bad_images = skip_bad_images

    def __len__(self) -> int:
        return len(self.files)

    def load(self, path: Path) -> torch.Tensor:
        """One file as a (3, S, S) float32 tensor in [-1, 1]; DataError naming the file if it cannot be used."""
        image = fit_square(decode_rgb(path, str(path)), self.image_size, str(path), allow_upscale=self.allow_upscale)
        return pil_to_model_tensor(image)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        retries = MAX_LOAD_RETRIES if self.skip_bad_images else 0
        for offset in range(min(retries, len(self.files) - 1) + 1):
            try:
                item = (index + offset) % len(self.files)
                return self.load(self.files[item]), NO_LABEL if self.labels is None else self.labels[item]
            except DataError as error:
                if not self.skip_bad_images:
                    raise
                log.warning("skipped at load: %s", error)
        raise DataError(f"{retries + 1} image files in a row from {self.files[index]} could not be decoded; "
                        "check the folder")


class ImageFolderDataModule(ImageDataModule):
    """Every image under data_dir (recursive; png, jpg, webp, ...) of image_size x image_size, or any size with
    resize (shorter side resized to image_size + center crop)."""

    def __init__(
        self,
        *,
        data_dir: str,  # root folder, searched recursively
        image_size: int = 256,  # side of the square training images
        resize: bool = False,  # resize + center-crop images of another size (False: they fail with the fix)
        skip_bad_images: bool = False,  # drop (and count) unreadable / unfitting files instead of failing
        allow_upscale: bool = False,  # with resize: upscale images smaller than image_size instead of failing
        max_images: int | None = None,  # keep the first N usable files in sorted path order (None: all)
        **settings: Unpack[ImageSettings],  # sample_shape, loader settings, hflip, seed
    ) -> None:
        super().__init__(image_size=image_size, **settings)
        self.data_dir = Path(data_dir)
        self.resize = resize
        self.skip_bad_images = skip_bad_images
        self.allow_upscale = allow_upscale
        self.max_images = max_images

    def describe(self) -> str:
        return f"data dir {self.data_dir}"

    def missing_data_message(self) -> str:
        """One line for a data_dir that does not exist."""
        return f"data dir {self.data_dir} does not exist; point data.data_dir at a folder of images"

    def check_data_dir(self) -> None:
        """DataError with the fix when data_dir is missing."""
        if not self.data_dir.exists():
            raise DataError(self.missing_data_message())

    def prepare_data(self) -> None:
        self.check_data_dir()

    def dataset_classes(self) -> int | None:
        """conditional: the number of class subfolders of data_dir (None: no labels)."""
        return len(class_folders(self.data_dir)) or None if self.conditional else None

    def scan(self, root: Path, max_images: int | None) -> FolderScan:
        return scan_image_folder(root, self.image_size, skip_bad_images=self.skip_bad_images,
                                 allow_upscale=self.allow_upscale, max_images=max_images, resize=self.resize)

    def build_folder_dataset(self) -> ImageFolderDataset:
        """Scan data_dir as a folder of images (see the module docstring for when files are checked); conditional:
        each class subfolder, every one of which must hold images."""
        if not self.data_dir.is_dir():
            raise DataError(f"data dir {self.data_dir} is not a folder; point data.data_dir at a folder of images")
        if not self.conditional:
            scan, labels = self.scan(self.data_dir, self.max_images), None
        else:
            scan, labels = FolderScan(files=[]), []
            for label, folder in enumerate(class_folders(self.data_dir)):
                if not list_image_files(folder):
                    raise DataError(f"data.data_dir={self.data_dir}: class subfolder {folder.name!r} holds no image "
                                    f"files; with data.conditional=true every subfolder of data_dir is a class: add "
                                    "images to it or remove it")
                left = None if self.max_images is None else self.max_images - len(scan.files)
                if left == 0:
                    break
                found = self.scan(folder, left)
                scan.files += found.files
                scan.skipped += found.skipped
                labels += [label] * len(found.files)
        self.skipped_images = scan.skipped
        return ImageFolderDataset(scan.files, image_size=self.image_size, allow_upscale=self.allow_upscale,
                                  skip_bad_images=self.skip_bad_images, labels=labels)

    def build_train_dataset(self) -> Dataset:
        self.check_data_dir()
        return self.build_folder_dataset()
