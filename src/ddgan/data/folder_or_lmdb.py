"""Photo sets read from a folder of images or an LMDB: CelebA-HQ 256 and LSUN Church 256 (data/celebahq256.yaml,
data/lsun_church256.yaml: their paper settings).

format="auto" picks LMDB when data_dir holds data.mdb (or is a single-file LMDB), else a folder.
LMDBs: ours (python -m src.prepare_lmdb), LSUN's own export, or NVAE's; see lmdb_dataset.py.
"""
from torch.utils.data import Dataset

from .errors import DataError
from .image_folder import ImageFolderDataModule
from .lmdb_dataset import LMDBImageDataset, inspect_lmdb
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

    def dataset_classes(self) -> int | None:
        """Folders: the class subfolders; LMDBs: the classes stored with them (None when they store no labels)."""
        if not self.conditional:
            return None
        if self.resolved_format() == "lmdb":
            classes = inspect_lmdb(self.data_dir).classes
            return len(classes) if classes else None
        return super().dataset_classes()


# The names of these data sets' datamodules before they became data configs alone (configs stored in checkpoints
# name them; the resolved stored config gives every setting)
CelebAHQ256DataModule = LSUNChurch256DataModule = FolderOrLMDBDataModule
