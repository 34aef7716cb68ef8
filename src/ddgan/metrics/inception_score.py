"""Inception Score (Salimans et al. 2016): IS = exp(E_x KL(p(y|x) || p(y))), p(y) the split's mean prediction."""
import math

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def inception_score(logits: torch.Tensor, *, splits: int = 10) -> tuple[float, float]:
    """Mean and (population) std of IS over `splits` consecutive, near-equal chunks of logits (N, K).

    Logits are unnormalised log-probabilities; for probabilities p pass p.log() (log_softmax leaves it as is).
    Uniform predictions give exactly 1; confident predictions spread evenly over K classes give K.
    """
    if len(logits) < splits:
        raise ValueError(f"need at least {splits} predictions for {splits} splits, got {len(logits)}")
    scores = []
    for log_p_yx in logits.double().log_softmax(dim=1).tensor_split(splits):  # log p(y|x), (n, K)
        log_p_y = log_p_yx.logsumexp(dim=0) - math.log(len(log_p_yx))  # log of the mean prediction p(y)
        kl = (log_p_yx.exp() * (log_p_yx - log_p_y)).sum(dim=1)  # KL(p(y|x) || p(y)) per x
        scores.append(kl.mean().exp())
    scores = torch.stack(scores)
    return float(scores.mean()), float(scores.std(unbiased=False))


class InceptionScore(Metric):
    """IS over logits streamed in batches; the logits are a list state gathered (cat) across DDP ranks.

    compute() returns (mean, std) over `splits` chunks of the gathered logits, in rank-major order.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, *, splits: int = 10, **kwargs) -> None:
        super().__init__(**kwargs)
        self.splits = splits
        self.add_state("logits", default=[], dist_reduce_fx="cat")

    def update(self, logits: torch.Tensor) -> None:
        self.logits.append(logits.detach().float())

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = inception_score(dim_zero_cat(self.logits), splits=self.splits)
        return torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)
