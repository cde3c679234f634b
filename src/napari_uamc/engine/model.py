"""The dual-task V-Net of UG-MCL (METHOD.md section 1).

A V-Net as in UA-MT/DTC: encoder stages of 1, 2, 3, 3, 3 conv(3x3x3)+norm+ReLU layers at F..16F
channels, a stride-2 conv downsample after stages 1-4, a transposed-conv decoder with 3, 3, 2, 1
conv layers per stage and additive skips; Dropout3d at the bottleneck and before two 1x1x1 heads
(C segmentation logits, and C-1 signed distances through tanh).

The network is split into :meth:`DualTaskVNet.encode` (deterministic given eval-mode norm layers)
and :meth:`DualTaskVNet.decode` (where all dropout lives), so MC-dropout sampling computes the
encoder once and only repeats the decoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from napari_uamc.errors import InputError

#: Conv layers per encoder stage (stage 5 is the bottleneck) and per decoder stage.
ENCODER_DEPTHS = (1, 2, 3, 3, 3)
DECODER_DEPTHS = (3, 3, 2, 1)
#: The input must be divisible by this in every spatial axis (four stride-2 downsamplings).
SIZE_MULTIPLE = 2 ** (len(ENCODER_DEPTHS) - 1)
NORMS = ("batch", "instance", "none")


def _norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    return nn.Identity()


class ConvNormAct(nn.Module):
    """conv -> norm -> ReLU; conv 3x3x3 (same size), 2x2x2 stride 2 (down) or transposed (up)."""

    def __init__(self, c_in: int, c_out: int, norm: str, kind: str = "same") -> None:
        super().__init__()
        if kind == "same":
            self.conv: nn.Module = nn.Conv3d(c_in, c_out, kernel_size=3, padding=1)
        elif kind == "down":
            self.conv = nn.Conv3d(c_in, c_out, kernel_size=2, stride=2)
        elif kind == "up":
            self.conv = nn.ConvTranspose3d(c_in, c_out, kernel_size=2, stride=2)
        else:
            raise ValueError(f"ConvNormAct kind must be 'same', 'down' or 'up', not {kind!r}")
        self.norm = _norm_layer(norm, c_out)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.conv(x)))


def _stage(depth: int, c_in: int, c_out: int, norm: str) -> nn.Sequential:
    return nn.Sequential(
        *(ConvNormAct(c_in if i == 0 else c_out, c_out, norm) for i in range(depth))
    )


class DualTaskVNet(nn.Module):
    """V-Net with a segmentation head (C logits) and an SDF head (C-1 channels, tanh).

    Parameters: ``in_channels`` image channels, ``n_classes`` C >= 2 (background included),
    ``width`` F (first-stage channels; the paper uses 16), ``norm`` ``"batch"`` | ``"instance"``
    (affine) | ``"none"``, ``dropout`` the Dropout3d probability (0 disables it).
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 2,
        width: int = 16,
        norm: str = "batch",
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if not isinstance(in_channels, int) or in_channels < 1:
            raise InputError(f"in_channels must be an integer >= 1, not {in_channels!r}")
        if not isinstance(n_classes, int) or n_classes < 2:
            raise InputError(
                f"n_classes must be an integer >= 2 (with background), not {n_classes!r}"
            )
        if not isinstance(width, int) or width < 1:
            raise InputError(f"width must be an integer >= 1, not {width!r}")
        if norm not in NORMS:
            raise InputError(f"norm must be one of {NORMS}, not {norm!r}")
        if not 0 <= dropout < 1:
            raise InputError(f"dropout must be in [0, 1), not {dropout!r}")
        self.in_channels = in_channels
        self.n_classes = n_classes
        self.width = width
        self.norm = norm
        self.dropout_p = float(dropout)

        channels = [width * 2**level for level in range(len(ENCODER_DEPTHS))]
        self.encoder = nn.ModuleList(
            _stage(depth, in_channels if level == 0 else channels[level], channels[level], norm)
            for level, depth in enumerate(ENCODER_DEPTHS)
        )
        self.down = nn.ModuleList(
            ConvNormAct(channels[level], channels[level + 1], norm, kind="down")
            for level in range(len(ENCODER_DEPTHS) - 1)
        )
        # Decoder level i goes from channels[-1 - i] up to channels[-2 - i].
        self.up = nn.ModuleList(
            ConvNormAct(channels[-1 - i], channels[-2 - i], norm, kind="up")
            for i in range(len(DECODER_DEPTHS))
        )
        self.decoder = nn.ModuleList(
            _stage(depth, channels[-2 - i], channels[-2 - i], norm)
            for i, depth in enumerate(DECODER_DEPTHS)
        )
        self.seg_head = nn.Conv3d(width, n_classes, kernel_size=1)
        self.sdf_head = nn.Conv3d(width, n_classes - 1, kernel_size=1)

    # ------------------------------------------------------------------------------------------
    def check_input(self, x: Tensor) -> None:
        """Raise :class:`InputError` unless ``x`` is [B, in_channels, X, Y, Z], each % 16 == 0."""
        if x.dim() != 5:
            raise InputError(
                "The network expects a 5-D tensor [batch, channel, x, y, z], "
                f"got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise InputError(
                f"The network expects {self.in_channels} input channel(s), got {x.shape[1]} "
                f"(shape {tuple(x.shape)})"
            )
        spatial = tuple(x.shape[2:])
        if any(s % SIZE_MULTIPLE or s == 0 for s in spatial):
            raise InputError(
                f"Every spatial size of the network input must be a positive multiple of "
                f"{SIZE_MULTIPLE}, got {spatial}; pad or crop the patch"
            )
        if self.norm == "instance" and self.training and all(s == SIZE_MULTIPLE for s in spatial):
            raise InputError(
                f"Instance norm cannot train on a {spatial} input: the bottleneck would be a "
                f"single voxel; use a patch larger than {SIZE_MULTIPLE} in some axis"
            )

    def encode(self, x: Tensor) -> list[Tensor]:
        """Stage outputs ``[x1, x2, x3, x4, x5]``; x5 is the bottleneck before dropout."""
        self.check_input(x)
        features = []
        for level, stage in enumerate(self.encoder):
            x = stage(x)
            features.append(x)
            if level < len(self.down):
                x = self.down[level](x)
        return features

    def decode(
        self, features: Sequence[Tensor], *, mc_dropout: bool | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(seg_logits [B, C, ...], sdf [B, C-1, ...])`` from :meth:`encode`'s features.

        ``mc_dropout``: None -> dropout active iff ``self.training``; True -> active even in eval
        mode (MC-dropout sampling with norm layers in eval); False -> off.
        """
        if len(features) != len(ENCODER_DEPTHS):
            raise ValueError(
                f"decode expects {len(ENCODER_DEPTHS)} feature maps from encode, "
                f"got {len(features)}"
            )
        active = self.training if mc_dropout is None else bool(mc_dropout)
        x = self._dropout(features[-1], active)
        for i, (up, stage) in enumerate(zip(self.up, self.decoder)):
            x = stage(up(x) + features[-2 - i])
        x = self._dropout(x, active)
        return self.seg_head(x), torch.tanh(self.sdf_head(x))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.decode(self.encode(x))

    def _dropout(self, x: Tensor, active: bool) -> Tensor:
        if not active or self.dropout_p == 0:
            return x
        return F.dropout3d(x, p=self.dropout_p, training=True)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or frozen, buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


# Re-exported here: loading research checkpoints is part of the model's public face.
from napari_uamc.engine.research_checkpoint import (  # noqa: E402
    ResearchLoadReport,
    load_research_state_dict,
)

__all__ = [
    "DualTaskVNet",
    "ConvNormAct",
    "ResearchLoadReport",
    "count_parameters",
    "load_research_state_dict",
    "ENCODER_DEPTHS",
    "DECODER_DEPTHS",
    "SIZE_MULTIPLE",
]
