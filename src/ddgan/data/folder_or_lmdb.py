"""256 px photo sets read from a folder of images or an LMDB: CelebA-HQ 256 and LSUN Church 256.

format="auto" picks LMDB when data_dir holds data.mdb (or is a single-file LMDB), else a folder.
LMDBs: ours (python -m src.prepare_lmdb), LSUN's own export, or NVAE's; see lmdb_dataset.py.
"""
from torch.utils.data import Dataset

from .errors import DataError
from .image_folder import ImageFolderDataModule
from .lmdb_dataset import LMDBImageDataset
from .lmdb_format import is_lmdb, prepare_hint

FORMATS = ("auto", "folder", "lmdb")


class FolderOrLMDBDataModule(ImageFolderDataModule):
    """ImageFolderDataModule that also reads LMDBs; `format` is auto | folder | lmdb.

    skip_bad_images applies to folders only: an LMDB record that cannot be decoded raises a DataError
    naming its key (ours are checked when written; LSUN's and NVAE's are trusted).
    """

    def __init__(self, *, format: str = "auto", **kwargs) -> None:  # kwargs: ImageFolderDataModule's
        super().__init__(**kwargs)
        if format not in FORMATS:
            raise DataError(f"data.format={format!r} is not one of {', '.join(FORMATS)}")
        self.format = format

    def missing_data_message(self) -> str:
        return (f"data dir {self.data_dir} does not exist; point data.data_dir at a folder of images or an "
                f"LMDB, e.g. one built with {prepare_hint(self.data_dir, self.image_size)}")

    def resolved_format(self) -> str:
        """'folder' or 'lmdb' for data_dir; DataError if format=lmdb but data_dir is no LMDB."""
        self.check_data_dir()
        found = "lmdb" if is_lmdb(self.data_dir) else "folder"
        if self.format == "lmdb" and found != "lmdb":
            raise DataError(f"data dir {self.data_dir} is not an LMDB (no data.mdb); build one with "
                            f"{prepare_hint(self.data_dir, self.image_size)} or set data.format=folder")
        return found if self.format == "auto" else self.format

    def build_train_dataset(self) -> Dataset:
        if self.resolved_format() == "folder":
            return self.build_folder_dataset()
        return LMDBImageDataset(self.data_dir, image_size=self.image_size, allow_upscale=self.allow_upscale,
                                max_images=self.max_images)


class CelebAHQ256DataModule(FolderOrLMDBDataModule):
    """CelebA-HQ at 256 px: point data_dir at the 27k train split (folder or LMDB); random h-flip as in the paper."""

    def __init__(
        self,
        *,
        data_dir: str,  # folder of images or LMDB of the train split
        format: str = "auto",  # auto | folder | lmdb
        image_size: int = 256,  # side of the square training images
        resize: bool = True,  # folders: resize + center crop (False: images must be image_size x image_size)
        hflip: bool = True,  # random horizontal flip (paper: yes)
        skip_bad_images: bool = False,  # folders: drop (and count) unreadable / too-small files
        allow_upscale: bool = False,  # upscale images smaller than image_size instead of failing
        max_images: int | None = None,  # first N images (None: all)
        batch_size_per_device: int = 4,  # paper: global 32 on 8 GPUs
        num_workers: int = 4,  # loader workers per device
        pin_memory: bool = True,  # page-locked batches
        persistent_workers: bool = True,  # keep workers between epochs (when num_workers > 0)
        prefetch_factor: int | None = None,  # batches ahead per worker (None: torch default)
        seed: int = 0,  # shuffle generator seed
    ) -> None:
        super().__init__(
            format=format, data_dir=data_dir, image_size=image_size, resize=resize, hflip=hflip, skip_bad_images=skip_bad_images,
            allow_upscale=allow_upscale, max_images=max_images, batch_size_per_device=batch_size_per_device,
            num_workers=num_workers, pin_memory=pin_memory, persistent_workers=persistent_workers,
            prefetch_factor=prefetch_factor, seed=seed,
        )


class LSUNChurch256DataModule(FolderOrLMDBDataModule):
    """LSUN Church outdoor at 256 px: the first 120k train images (LSUN's LMDB key order, or sorted file
    names), resized + center-cropped, random h-flip, as in the paper."""

    def __init__(
        self,
        *,
        data_dir: str,  # church_outdoor_train_lmdb/ as downloaded, our LMDB, or a folder of images
        format: str = "auto",  # auto | folder | lmdb
        image_size: int = 256,  # side of the square training images
        resize: bool = True,  # folders: resize + center crop (False: images must be image_size x image_size)
        hflip: bool = True,  # random horizontal flip (paper: yes)
        skip_bad_images: bool = False,  # folders: drop (and count) unreadable / too-small files
        allow_upscale: bool = False,  # upscale images smaller than image_size instead of failing
        max_images: int | None = 120_000,  # paper: the first 120k images
        batch_size_per_device: int = 8,  # paper: global 64 on 8 GPUs
        num_workers: int = 4,  # loader workers per device
        pin_memory: bool = True,  # page-locked batches
        persistent_workers: bool = True,  # keep workers between epochs (when num_workers > 0)
        prefetch_factor: int | None = None,  # batches ahead per worker (None: torch default)
        seed: int = 0,  # shuffle generator seed
    ) -> None:
        super().__init__(
            format=format, data_dir=data_dir, image_size=image_size, resize=resize, hflip=hflip, skip_bad_images=skip_bad_images,
            allow_upscale=allow_upscale, max_images=max_images, batch_size_per_device=batch_size_per_device,
            num_workers=num_workers, pin_memory=pin_memory, persistent_workers=persistent_workers,
            prefetch_factor=prefetch_factor, seed=seed,
        )
