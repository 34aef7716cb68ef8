"""2-D Gaussian mixtures (25-Gaussians by default) as a LightningDataModule of fresh samples."""
import logging
from collections.abc import Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from src.ddgan.mixture import GRID_25, Mixture, validate_centers

from .datamodule import check_num_classes, check_sample_shape

log = logging.getLogger(__name__)
COORDINATE_STD_TOLERANCE = 0.01  # relative: data.coordinate_std is written rounded (2.83 for the 5×5 grid's 2.8289)


class MixtureBatches(Dataset):
    """`num_batches` batches of fresh mixture samples; item i is a whole batch (points in the networks' units, mode)."""

    def __init__(self, mixture: Mixture, batch_size: int, num_batches: int, seed: int):
        self.mixture = mixture
        self.batch_size, self.num_batches = batch_size, num_batches
        self.rng = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.num_batches

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mixture.sample(self.batch_size, generator=self.rng)


class GaussianMixtureDataModule(L.LightningDataModule):
    """Equal-weight mixture of isotropic Gaussians; the networks see the points multiplied by `scale`.

    Metrics are reported in the mixture's own units: `mixture` (a Mixture) applies and undoes the scale. Batches are
    (points, mode index); with `conditional` the mode index is the class of a class-conditional model.
    """

    def __init__(
        self,
        centers: list[list[float]] | None = None,  # mode centers [[x, y], ...]; default the 5×5 grid {-4..4}²
        std: float = 0.05,  # standard deviation of every mode
        scale: float = 1.0,  # networks see points * scale
        batch_size_per_device: int = 512,  # batch on each device
        iterations_per_epoch: int = 500,  # batches that make one epoch
        seed: int = 0,  # base seed of the sample stream (rank is added under DDP)
        sample_shape: Sequence[int] | None = None,  # the data config's [2], checked against the centers
        coordinate_std: float | None = None,  # the data config's per-coordinate std (the networks': x scale), checked
        conditional: bool = False,  # the model is class-conditional on the mode index
        num_classes: int | None = None,  # the data config's class count (checked against the centers when conditional)
    ):
        super().__init__()
        self.centers = validate_centers(GRID_25 if centers is None else centers)
        if not std > 0:
            raise ValueError(f"data.std={std!r} is invalid: it must be > 0.")
        self.std, self.scale = float(std), float(scale)
        self.mixture = Mixture(self.centers, self.std, self.scale)
        self.batch_size_per_device = batch_size_per_device
        self.iterations_per_epoch = iterations_per_epoch
        self.seed = seed
        self.sample_shape = check_sample_shape(sample_shape, [self.centers.shape[1]], type(self).__name__)
        exact = self.mixture.coordinate_std()
        if coordinate_std is not None and abs(coordinate_std - exact) > COORDINATE_STD_TOLERANCE * exact:
            log.warning(f"data.coordinate_std={coordinate_std} but these centers and std give {exact:.3g}: the toy "
                        f"generator's linear-denoiser skip assumes the first; set data.coordinate_std={exact:.3g}")
        self.model_classes = check_num_classes(conditional, num_classes, len(self.centers),
                                               f"the mixture of {len(self.centers)} modes")
        self.dataset: MixtureBatches | None = None
        self._restored_rng_state: torch.Tensor | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            rank = self.trainer.global_rank if self.trainer is not None else 0
            world_size = self.trainer.world_size if self.trainer is not None else 1
            # Under DDP the distributed sampler hands each rank 1/world_size of the indices; items ignore their index
            # (each rank draws its own stream), so this keeps an epoch at iterations_per_epoch iterations on every rank.
            num_batches = self.iterations_per_epoch * world_size
            self.dataset = MixtureBatches(self.mixture, self.batch_size_per_device, num_batches, self.seed + rank)
        if self._restored_rng_state is not None:
            self.dataset.rng.set_state(self._restored_rng_state)
            self._restored_rng_state = None

    def train_dataloader(self) -> DataLoader:
        # its own generator: a loader without one draws a seed from torch's global stream at every epoch start,
        # which a resumed run (its stream restored at the start of training) would not draw at the same point
        return DataLoader(self.dataset, batch_size=None, shuffle=False, num_workers=0, generator=torch.Generator().manual_seed(self.seed))

    def state_dict(self) -> dict:
        return {"rng_state": self.dataset.rng.get_state()} if self.dataset is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        """Resume the sample stream where the checkpoint left it (before or after setup)."""
        self._restored_rng_state = state_dict.get("rng_state")
        if self.dataset is not None:
            self.setup()
