"""A train loader whose place in the epoch is part of the checkpoint, so a resume mid-epoch sees the same batches.

Lightning saves `state_dict()` of every train loader that has one in the fit loop's checkpoint state and calls
`load_state_dict()` before the resumed run's first batch (torchdata's StatefulDataLoader uses the same hook). The
order of epoch e is a pure function of (seed, e), as in DistributedSampler, so the state is two integers: the epoch
and the batches already yielded in it. A resumed run skips those batches by index, without loading them.

Our own sampler rather than torchdata's StatefulDataLoader: no extra dependency that copies torch's private
DataLoader internals, and it is a DistributedSampler, so Lightning keeps it under DDP (every rank resumes its shard).
Per-item randomness drawn inside worker processes (num_workers > 0: the random flip) is not resumed exactly;
with num_workers=0 it comes from torch's global stream, which the checkpoint holds (fault_tolerance.RandomStreams).
"""
from typing import Any

from torch.utils.data import DataLoader, Dataset, DistributedSampler


class ResumableShuffle(DistributedSampler):
    """Shuffled indices of this rank's shard; order of epoch e fixed by (seed, e); an epoch can start at `start`."""

    def __init__(self, dataset: Dataset, *, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.start = 0  # indices of the current epoch already consumed before a resume

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.start = 0  # a new epoch starts at its beginning
        super().set_epoch(epoch)

    def resume_at(self, epoch: int, start: int) -> None:
        """The next pass is epoch `epoch` from its `start`-th index."""
        self.set_epoch(epoch)
        self.start = start

    def __iter__(self):
        indices = list(super().__iter__())
        return iter(indices[self.start:])


class ResumableDataLoader(DataLoader):
    """DataLoader over a ResumableShuffle that counts the batches it yields and resumes from that count."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.sampler, ResumableShuffle):
            raise TypeError(f"ResumableDataLoader needs a ResumableShuffle sampler, got {type(self.sampler).__name__}")
        self.epoch, self.batches_yielded = 0, 0  # position of the pass in progress

    def __iter__(self):
        return self._counted(super().__iter__())

    def _counted(self, batches):
        self.epoch, self.batches_yielded = self.sampler.epoch, self.sampler.start // self.batch_size
        for batch in batches:
            self.batches_yielded += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batches_yielded": self.batches_yielded, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume after the saved batch: mid-epoch, or at the next epoch's start when the saved one had ended."""
        epoch, done = state["epoch"], state["batches_yielded"] * state["batch_size"] // self.batch_size
        if done >= len(self):
            epoch, done = epoch + 1, 0
        self.sampler.resume_at(epoch, done * self.batch_size)
        self.epoch, self.batches_yielded = epoch, done
