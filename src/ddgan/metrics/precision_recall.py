"""Improved precision and recall (Kynkäänniemi et al. 2019) from k-NN manifolds in feature space.

The manifold of a feature set is the union of balls around each of its points, the radius being the distance
to the point's k-th nearest neighbour in the set (k = 3). Precision: the fraction of generated features inside
the real manifold; recall: the fraction of real features inside the generated manifold. A point on a ball's
boundary counts as inside. Distances are computed `batch_size` rows at a time, so memory is
O(batch_size x N), never N x N.
"""
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def knn_radii(features: torch.Tensor, *, k: int = 3, batch_size: int = 2048) -> torch.Tensor:
    """Distance (N,) from each row of features (N, D) to its k-th nearest neighbour among the other rows."""
    if len(features) <= k:
        raise ValueError(f"k-NN radii with k={k} need more than {k} feature vectors, got {len(features)}")
    # the k+1-th smallest distance skips the point itself (distance 0)
    return torch.cat([torch.cdist(rows, features).kthvalue(k + 1, dim=1).values for rows in features.split(batch_size)])


def fraction_inside(queries: torch.Tensor, points: torch.Tensor, radii: torch.Tensor, *,
                    batch_size: int = 2048) -> float:
    """Fraction of queries (M, D) within radii[j] of some points[j]: the share inside the k-NN manifold of points."""
    inside = [(torch.cdist(rows, points) <= radii).any(dim=1) for rows in queries.split(batch_size)]
    return float(torch.cat(inside).double().mean())


def precision_recall(real: torch.Tensor, fake: torch.Tensor, *, k: int = 3,
                     batch_size: int = 2048) -> tuple[float, float]:
    """(precision, recall) of generated features fake (M, D) against real features real (N, D)."""
    real, fake = real.float(), fake.float()
    precision = fraction_inside(fake, real, knn_radii(real, k=k, batch_size=batch_size), batch_size=batch_size)
    recall = fraction_inside(real, fake, knn_radii(fake, k=k, batch_size=batch_size), batch_size=batch_size)
    return precision, recall


class PrecisionRecall(Metric):
    """Improved precision / recall over features streamed in batches: update(features, real=...), compute().

    Features are list states gathered (cat) across DDP ranks. With `real_features` (e.g. from a reference cache)
    the real side is fixed (a plain attribute, not a state: DDP never duplicates it, which would shrink k-NN
    radii) and its radii are computed once and kept. compute() returns {"precision", "recall"}.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, *, k: int = 3, batch_size: int = 2048, real_features: torch.Tensor | None = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.k = k
        self.batch_size = batch_size
        self.add_state("real_features", default=[], dist_reduce_fx="cat")
        self.add_state("fake_features", default=[], dist_reduce_fx="cat")
        self.fixed_real_features: torch.Tensor | None = None
        self.fixed_real_radii: torch.Tensor | None = None
        if real_features is not None:
            self.set_real_features(real_features)

    def set_real_features(self, features: torch.Tensor) -> None:
        """Fix the real side to precomputed features (N, D)."""
        self.fixed_real_features = features.detach().float()
        self.fixed_real_radii = None

    def update(self, features: torch.Tensor, real: bool) -> None:
        if features.ndim != 2:
            raise ValueError(f"expected features (N, D), got {tuple(features.shape)}")
        if real and self.fixed_real_features is not None:
            raise RuntimeError("real features are fixed (set_real_features); update only with real=False")
        (self.real_features if real else self.fake_features).append(features.detach().float())

    def real_side(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Real features and their k-NN radii on `device` (fixed ones are computed once)."""
        if self.fixed_real_features is None:
            real = dim_zero_cat(self.real_features)
            return real, knn_radii(real, k=self.k, batch_size=self.batch_size)
        self.fixed_real_features = self.fixed_real_features.to(device)
        if self.fixed_real_radii is None:
            self.fixed_real_radii = knn_radii(self.fixed_real_features, k=self.k, batch_size=self.batch_size)
        return self.fixed_real_features, self.fixed_real_radii.to(device)

    def compute(self) -> dict[str, torch.Tensor]:
        fake = dim_zero_cat(self.fake_features)
        real, real_radii = self.real_side(fake.device)
        fake_radii = knn_radii(fake, k=self.k, batch_size=self.batch_size)
        precision = fraction_inside(fake, real, real_radii, batch_size=self.batch_size)
        recall = fraction_inside(real, fake, fake_radii, batch_size=self.batch_size)
        return {"precision": torch.tensor(precision, dtype=torch.float64),
                "recall": torch.tensor(recall, dtype=torch.float64)}
