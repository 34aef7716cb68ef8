"""Shared loader plumbing for every datamodule: a train set of (image in [-1, 1], label) built in setup()."""
from collections.abc import Sequence
from typing import TypedDict

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from .errors import DataError
from .resumable import ResumableDataLoader, ResumableShuffle


class RandomHorizontalFlip(Dataset):
    """Wraps an (image, label) dataset; flips each (C, H, W) image left-right with probability 1/2."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.dataset[index]
        if torch.rand(()) < 0.5:  # torch's per-worker RNG, reseeded by the DataLoader every epoch
            image = image.flip(-1)
        return image, label


class ImageSettings(TypedDict, total=False):
    """The settings every image datamodule passes on to ImageDataModule (data configs set them; defaults there)."""

    sample_shape: Sequence[int] | None  # the data config's [C, H, W], checked against the data
    batch_size_per_device: int  # batch of one process; global batch = this x world size
    num_workers: int  # DataLoader worker processes per device (0: load in the main process)
    pin_memory: bool  # page-locked batches for faster host-to-GPU copies
    persistent_workers: bool  # keep workers alive between epochs (only used when num_workers > 0)
    prefetch_factor: int | None  # batches loaded ahead per worker (None: torch default; needs workers)
    hflip: bool  # random horizontal flip
    seed: int  # seeds the dataset contents (where drawn) and the loader's shuffle generator
    conditional: bool  # the model is class-conditional: labels must be the data's classes 0..num_classes-1
    num_classes: int | None  # the data config's class count (checked against the data when conditional)


def check_num_classes(conditional: bool, declared: int | None, found: int | None, what: str) -> int:
    """The classes a conditional model gets (0 when not conditional); DataError when the data has no labels or a
    data config declares another count (data.num_classes)."""
    if not conditional:
        return 0
    if not found:
        raise DataError(f"data.conditional=true but {what} has no class labels; use labelled data (for a folder: one "
                        "subfolder per class) or set data.conditional=false")
    if declared is not None and int(declared) != found:
        raise DataError(f"data.num_classes={declared} does not match the data: {what} has {found} classes; set "
                        f"data.num_classes={found}")
    return found


def check_sample_shape(declared: Sequence[int] | None, produced: list[int], what: str) -> list[int]:
    """The shape of one data point, `produced`; DataError when a data config declares another (data.sample_shape)."""
    if declared is not None and [int(d) for d in declared] != produced:
        raise DataError(f"data.sample_shape={list(declared)} does not match the data: {what} yields samples of shape "
                        f"{produced}; set data.sample_shape={produced} or change the data settings")
    return produced


class ImageDataModule(L.LightningDataModule):
    """Base class: subclasses build the train dataset; this class shuffles, batches and flips it.

    The train loader yields (images (N, C, H, W) float32 in [-1, 1], labels (N,) long, -1 where none); `sample_shape`
    is [C, H, W] (the data config declares it too, for the model; a declared shape that differs raises DataError).
    With `conditional`, the labels are the classes a class-conditional model trains on: setup() checks that the data
    has `num_classes` of them (`dataset_classes`), and `model_classes` is that count (0 when not conditional).
    Its sampler is a DistributedSampler (ResumableShuffle) over this rank's shard, so Lightning keeps it under DDP.
    """

    def __init__(
        self,
        *,
        image_size: int,  # H = W of every image
        num_channels: int = 3,  # C of every image (RGB); in hparams as before, so reference caches keep their names
        sample_shape: Sequence[int] | None = None,  # the data config's declaration of [C, H, W] (None: not checked)
        batch_size_per_device: int = 64,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        prefetch_factor: int | None = None,
        hflip: bool = False,
        seed: int = 0,
        conditional: bool = False,
        num_classes: int | None = None,
    ) -> None:  # the settings after image_size and num_channels: see ImageSettings
        super().__init__()
        # the content settings (see reference_name); labels do not change the images
        self.save_hyperparameters(logger=False, ignore=["sample_shape", "conditional", "num_classes"])
        self.conditional = conditional
        self.num_classes = num_classes
        self.image_size = image_size
        self.sample_shape = check_sample_shape(sample_shape, [num_channels, image_size, image_size], type(self).__name__)
        self.batch_size_per_device = batch_size_per_device
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.prefetch_factor = prefetch_factor
        self.hflip = hflip
        self.seed = seed
        self.train_dataset: Dataset | None = None

    def build_train_dataset(self) -> Dataset:
        """The un-flipped train set of (image (C, H, W) float32 in [-1, 1], int label); called once in setup()."""
        raise NotImplementedError

    def dataset_classes(self) -> int | None:
        """How many classes the train set's labels have (labels 0..n-1; known before it is built); None: no labels."""
        return None

    @property
    def model_classes(self) -> int:
        """The num_classes of the model this data trains: the data's classes when conditional, else 0 (DataError
        when conditional data has no labels or not data.num_classes of them)."""
        return check_num_classes(self.conditional, self.num_classes, self.dataset_classes(), self.describe())

    def describe(self) -> str:
        """What the data is, for messages (folders name their path)."""
        return type(self).__name__

    def setup(self, stage: str | None = None, world_size: int | None = None) -> None:
        """Build the train set once per process and check that every device gets a batch (world_size: the
        trainer's, else 1); raises DataError before any training work."""
        if self.train_dataset is None:
            dataset = self.build_train_dataset()
            self.train_dataset = RandomHorizontalFlip(dataset) if self.hflip else dataset
            check_num_classes(self.conditional, self.num_classes, self.dataset_classes(), self.describe())
        world_size = world_size or (self.trainer.world_size if self.trainer is not None else 1)
        count, batch = len(self.train_dataset), self.batch_size_per_device
        if count // world_size < batch:
            raise DataError(
                f"{self.describe()} has {count} images, fewer than one batch: batch_size_per_device={batch} on each "
                f"of {world_size} device(s) needs {batch * world_size} (drop_last would yield no batch); "
                "add images or lower data.batch_size_per_device"
            )

    def train_dataloader(self) -> DataLoader:
        """Shuffled, drop_last batches of (images, labels)."""
        if self.train_dataset is None:
            self.setup("fit")
        rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        uses_workers = self.num_workers > 0
        return ResumableDataLoader(  # its place in the epoch is checkpointed: a mid-epoch resume is exact
            self.train_dataset,
            batch_size=self.batch_size_per_device,
            sampler=ResumableShuffle(self.train_dataset, num_replicas=world_size, rank=rank, seed=self.seed),
            drop_last=True,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and uses_workers,
            prefetch_factor=self.prefetch_factor if uses_workers else None,
            generator=torch.Generator().manual_seed(self.seed + rank),  # worker seeds (not the global stream)
        )
