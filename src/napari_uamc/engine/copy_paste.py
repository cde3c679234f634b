"""Bidirectional copy-paste of labeled and unlabeled patches (Bai et al., "Bidirectional Copy-Paste
for Semi-Supervised Medical Image Segmentation", CVPR 2023), with whole-case teacher targets.

Each labeled patch is paired with one unlabeled patch and one box mask ``M`` (a box of
:data:`BOX_FRACTION` of the patch on every axis, at a random place inside it). The step trains on
two mixed patches instead of the pair: ``x_l * M + x_u * (1 - M)`` (the labeled box pasted into
the unlabeled patch) and ``x_u * M + x_l * (1 - M)`` (the reverse), supervised by the accepted
label where the voxel comes from the labeled patch and by the teacher's pseudo-label (the arg max
of its cached mean probabilities, :mod:`napari_uamc.engine.teacher_targets`) elsewhere. A step
sees as many patches as a supervised step of ``labeled_batch_size`` * 2 patches, and no teacher
pass: the teacher's work is the targets' refresh. This implementation differs from the paper's:
the teacher's targets are whole-case and refreshed every ``teacher_refresh`` steps, both parts of
a mixed patch weigh the same (the paper weighs the unlabeled part 0.5), and the pseudo-label is
not reduced to its largest connected component.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Side of the pasted box as a fraction of the patch's side, per axis (the paper's 2/3).
BOX_FRACTION = 2.0 / 3.0


def box_masks(count: int, shape: tuple[int, int, int], *, device: torch.device,
              generator: torch.Generator | None = None) -> Tensor:
    """``count`` box masks ``[count, X, Y, Z]`` (float, 1 inside), each a box of
    :data:`BOX_FRACTION` of ``shape`` on every axis at a uniformly random place inside it."""
    masks = torch.zeros((count, *shape), device=device)
    for index in range(count):
        where = []
        for size in shape:
            side = max(1, int(round(size * BOX_FRACTION)))
            start = int(torch.randint(0, size - side + 1, (1,), generator=generator))
            where.append(slice(start, start + side))
        masks[(index, *where)] = 1.0
    return masks


def copy_paste(x: Tensor, label: Tensor, pseudo_label: Tensor,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """The mixed batch of one step: ``(images [2L, 1, X, Y, Z], labels [2L, X, Y, Z])``.

    ``x``: ``[2L, 1, X, Y, Z]``, the ``L`` labeled patches first, then ``L`` unlabeled ones (paired
    in order); ``label``: ``[L, X, Y, Z]`` classes of the labeled patches; ``pseudo_label``:
    ``[L, X, Y, Z]`` the teacher's classes of the unlabeled patches. Random box places come from
    ``generator`` (torch's global generator when None).

    Raises:
        ValueError: when the batch is not labeled and unlabeled patches in equal numbers, or the
            labels' shapes do not match the patches.
    """
    pairs = label.shape[0]
    if x.shape[0] != 2 * pairs or pseudo_label.shape != label.shape or x.shape[2:] != label.shape[1:]:
        raise ValueError(
            f"copy-paste needs as many unlabeled as labeled patches with labels on their grid: images "
            f"{tuple(x.shape)}, labels {tuple(label.shape)}, pseudo-labels {tuple(pseudo_label.shape)}"
        )
    masks = box_masks(pairs, tuple(label.shape[1:]), device=x.device, generator=generator)
    box = masks.unsqueeze(1).to(x.dtype)
    labeled_x, unlabeled_x = x[:pairs], x[pairs:]
    inside = masks.bool()
    label, pseudo_label = label.long(), pseudo_label.long()
    images = torch.cat([labeled_x * box + unlabeled_x * (1 - box), unlabeled_x * box + labeled_x * (1 - box)])
    labels = torch.cat([torch.where(inside, label, pseudo_label), torch.where(inside, pseudo_label, label)])
    return images, labels
