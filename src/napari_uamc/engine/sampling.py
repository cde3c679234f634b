"""Two-stream batches: every batch = labeled patches first, then unlabeled ones.

Every random choice is a pure function of ``(seed, rank, iteration)``: the case order of each
stream is a fresh permutation per pass over the stream, and the augmentation of batch ``i`` comes
from a generator seeded with ``i``. So batch ``i`` is the same whichever process or thread builds
it, in whatever order; a resumed run continues exactly; ranks of a multi-GPU run see different
data. :class:`TrainingBatches` is a map-style dataset indexed by iteration, so
:func:`batch_loader` can hand it to a torch ``DataLoader`` with worker processes on a GPU (an SDF
target costs about 0.15 s per 112x112x80 patch on one core) or build batches in the calling thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from napari_uamc.engine.augment import AugmentParams, crop_rotate_flip, draw_params, rotated_spacing
from napari_uamc.engine.dataset import TrainingCase
from napari_uamc.engine.sdf import sdf_targets_for_labels

#: Separate random streams derived from the seed (values are arbitrary but fixed forever).
_STREAM_LABELED = 1
_STREAM_UNLABELED = 2
_STREAM_AUGMENT = 3
#: Batches prepared ahead per DataLoader worker.
PREFETCH_PER_WORKER = 2


def _rng(seed: int, *keys: int) -> np.random.Generator:
    """A generator for ``(seed, *keys)``; any int seed (negative too) is accepted."""
    return np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, *keys])


class CyclicShuffle:
    """Endless sequence over ``range(n)``: pass ``e`` is a permutation seeded by ``e``."""

    def __init__(self, n: int, seed: int, stream: int, rank: int = 0) -> None:
        if n < 1:
            raise ValueError(f"CyclicShuffle needs at least one item, got {n}")
        self.n, self.seed, self.stream, self.rank = n, seed, stream, rank
        self._epoch = -1
        self._order = np.arange(n)

    def item(self, position: int) -> int:
        """The item at ``position`` of the endless sequence."""
        epoch, index = divmod(int(position), self.n)
        if epoch != self._epoch:
            self._order = _rng(self.seed, self.rank, self.stream, epoch).permutation(self.n)
            self._epoch = epoch
        return int(self._order[index])

    def take(self, start: int, count: int) -> list[int]:
        return [self.item(start + i) for i in range(count)]


class TwoStreamSampler:
    """Case indices of batch ``iteration``: ``labeled_per_batch`` labeled + ``unlabeled_per_batch``
    unlabeled, each stream cycling through its cases with a reshuffle after every pass."""

    def __init__(
        self,
        n_labeled: int,
        n_unlabeled: int,
        labeled_per_batch: int,
        unlabeled_per_batch: int,
        seed: int,
        rank: int = 0,
    ) -> None:
        if n_labeled < 1 or labeled_per_batch < 1:
            raise ValueError("a batch needs at least one labeled case")
        if unlabeled_per_batch and n_unlabeled < 1:
            raise ValueError("unlabeled samples were asked for but there are no unlabeled cases")
        self.labeled_per_batch = labeled_per_batch
        self.unlabeled_per_batch = unlabeled_per_batch
        self._labeled = CyclicShuffle(n_labeled, seed, _STREAM_LABELED, rank)
        self._unlabeled = (
            CyclicShuffle(n_unlabeled, seed, _STREAM_UNLABELED, rank) if unlabeled_per_batch else None
        )

    def batch(self, iteration: int) -> tuple[list[int], list[int]]:
        labeled = self._labeled.take(iteration * self.labeled_per_batch, self.labeled_per_batch)
        unlabeled = (
            self._unlabeled.take(iteration * self.unlabeled_per_batch, self.unlabeled_per_batch)
            if self._unlabeled is not None
            else []
        )
        return labeled, unlabeled


@dataclass
class SampleSpec:
    """What one sample of a batch is: which case and which augmentation."""

    case: TrainingCase
    params: AugmentParams


class TrainingBatches(Dataset):
    """Batch ``i`` (a dict of CPU tensors) for iteration ``i``.

    ``image``: float32 [B, 1, X, Y, Z], labeled samples first; ``label``: uint8 [Bl, X, Y, Z];
    ``sdf``: float32 [Bl, C-1, X, Y, Z] (only when ``with_sdf``); ``length`` bounds ``len()``.
    """

    def __init__(
        self,
        labeled: Sequence[TrainingCase],
        unlabeled: Sequence[TrainingCase],
        *,
        patch: Sequence[int],
        labeled_per_batch: int,
        unlabeled_per_batch: int,
        n_classes: int,
        seed: int,
        rank: int = 0,
        with_sdf: bool = True,
        length: int = 2**62,
    ) -> None:
        self.labeled = list(labeled)
        self.unlabeled = list(unlabeled)
        self.patch = tuple(int(p) for p in patch)
        self.n_classes = n_classes
        self.seed = seed
        self.rank = rank
        self.with_sdf = with_sdf
        self.length = length
        self.sampler = TwoStreamSampler(
            len(self.labeled), len(self.unlabeled), labeled_per_batch, unlabeled_per_batch,
            seed, rank,
        )

    def __len__(self) -> int:
        return self.length

    def specs(self, iteration: int) -> tuple[list[SampleSpec], list[SampleSpec]]:
        """The labeled and unlabeled samples of batch ``iteration`` (cheap: no array work)."""
        labeled_idx, unlabeled_idx = self.sampler.batch(iteration)
        rng = _rng(self.seed, self.rank, _STREAM_AUGMENT, iteration)
        labeled = [self.labeled[i] for i in labeled_idx]
        unlabeled = [self.unlabeled[i] for i in unlabeled_idx]
        return (
            [SampleSpec(c, draw_params(rng, c.image.shape, self.patch)) for c in labeled],
            [SampleSpec(c, draw_params(rng, c.image.shape, self.patch)) for c in unlabeled],
        )

    def __getitem__(self, iteration: int) -> dict[str, torch.Tensor]:
        labeled, unlabeled = self.specs(int(iteration))
        images = [crop_rotate_flip(s.case.image, s.params, self.patch) for s in labeled + unlabeled]
        labels = [crop_rotate_flip(s.case.label, s.params, self.patch) for s in labeled]
        batch = {
            "image": torch.from_numpy(np.stack(images)[:, None].astype(np.float32, copy=False)),
            "label": torch.from_numpy(np.stack(labels).astype(np.uint8, copy=False)),
        }
        if self.with_sdf:
            targets = [
                sdf_targets_for_labels(
                    label, self.n_classes, rotated_spacing(s.case.spacing, s.params.rotations)
                )
                for label, s in zip(labels, labeled)
            ]
            batch["sdf"] = torch.from_numpy(np.stack(targets))
        return batch


def batch_loader(
    batches: TrainingBatches,
    iterations: Iterable[int],
    *,
    workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """Batches for ``iterations`` in order: built in this thread (``workers=0``) or by a
    ``DataLoader`` with ``workers`` processes that prefetch ahead of the training step."""
    iterations = list(iterations)
    if workers <= 0:
        for iteration in iterations:
            yield batches[iteration]
        return
    loader = DataLoader(
        batches,
        batch_size=None,
        sampler=iterations,
        num_workers=workers,
        pin_memory=pin_memory,
        prefetch_factor=PREFETCH_PER_WORKER,
        persistent_workers=False,
    )
    yield from loader
