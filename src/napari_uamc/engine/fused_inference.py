"""An inference-only copy of a :class:`DualTaskVNet` that computes the same function faster.

Three exact rewrites of every conv -> BatchNorm (eval) -> ReLU layer, none of which touches the
dropout (so MC-dropout sampling is unchanged):

* the BatchNorm is folded into the convolution's weights and bias (eval mode: it is an affine
  map per channel);
* the weights are stored in the compute precision and memory format (no per-call casts);
* on CPUs with oneDNN, conv + ReLU run as one fused oneDNN call (the ReLU as a post-op), which
  saves a full read and write of every activation. Where the fused op is missing or fails its
  self-check, the layer falls back to ``relu(conv(x))``.

On this project's CPUs about half of a V-Net forward was BatchNorm, ReLU and casts (memory-bound
elementwise passes); see docs/inference.md for the measurements. The original model is not
modified.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from napari_uamc.engine.model import ConvNormAct, DualTaskVNet


def _fused_ops_available() -> bool:
    return hasattr(torch.ops, "mkldnn") and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


class FusedConvReLU(nn.Module):
    """``relu(conv(x) * scale + shift)`` with the affine part folded into the weights."""

    def __init__(
        self, conv: nn.Conv3d | nn.ConvTranspose3d, weight: Tensor, bias: Tensor, relu: bool
    ) -> None:
        super().__init__()
        self.transposed = isinstance(conv, nn.ConvTranspose3d)
        self.stride = list(conv.stride)
        self.padding = list(conv.padding)
        self.dilation = list(conv.dilation)
        self.output_padding = list(getattr(conv, "output_padding", (0, 0, 0)))
        self.groups = conv.groups
        self.relu = relu
        self.use_onednn = False
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = nn.Parameter(bias, requires_grad=False)

    def reference(self, x: Tensor) -> Tensor:
        if self.transposed:
            y = F.conv_transpose3d(
                x, self.weight, self.bias, self.stride, self.padding, self.output_padding,
                self.groups, self.dilation,
            )
        else:
            y = F.conv3d(
                x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
            )
        return F.relu(y, inplace=True) if self.relu else y

    def _onednn(self, x: Tensor) -> Tensor:
        attr = "relu" if self.relu else "none"
        if self.transposed:
            return torch.ops.mkldnn._convolution_transpose_pointwise(
                x, self.weight, self.bias, self.padding, self.output_padding, self.stride,
                self.dilation, self.groups, attr, [], "",
            )
        return torch.ops.mkldnn._convolution_pointwise(
            x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups,
            attr, [], "",
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.use_onednn and x.device.type == "cpu":
            return self._onednn(x)
        return self.reference(x)

    def try_onednn(self, example: Tensor) -> bool:
        """Switch to the fused oneDNN op if it exists and matches the reference on ``example``."""
        if not _fused_ops_available() or example.device.type != "cpu":
            return False
        try:
            fused = self._onednn(example)
        except (RuntimeError, AttributeError, TypeError):
            return False
        expected = self.reference(example.clone())
        tolerance = 1e-2 if example.dtype == torch.bfloat16 else 1e-4
        scale = float(expected.float().abs().max()) + 1e-6
        error = float((fused.float() - expected.float()).abs().max())
        ok = fused.shape == expected.shape and error <= tolerance * scale
        self.use_onednn = ok
        return ok


def _folded(layer: ConvNormAct) -> tuple[Tensor, Tensor]:
    conv, norm = layer.conv, layer.norm
    channel_axis = 1 if isinstance(conv, nn.ConvTranspose3d) else 0
    weight = conv.weight.detach().double()
    if conv.bias is not None:
        bias = conv.bias.detach().double()
    else:
        bias = torch.zeros(weight.shape[channel_axis], dtype=torch.float64)
    if isinstance(norm, nn.BatchNorm3d):
        gamma = norm.weight.detach().double() if norm.affine else torch.ones_like(bias)
        beta = norm.bias.detach().double() if norm.affine else torch.zeros_like(bias)
        scale = gamma / torch.sqrt(norm.running_var.double() + norm.eps)
        shift = beta - norm.running_mean.double() * scale
        shape = [1] * weight.dim()
        shape[channel_axis] = -1
        weight = weight * scale.view(shape)
        bias = bias * scale + shift
    return weight, bias


def can_fuse(model: DualTaskVNet) -> bool:
    """Folding needs fixed statistics: BatchNorm with running statistics, or no norm at all."""
    norms = [m.norm for m in model.modules() if isinstance(m, ConvNormAct)]
    return all(
        isinstance(n, nn.Identity) or (isinstance(n, nn.BatchNorm3d) and n.track_running_stats)
        for n in norms
    )


def fuse_for_inference(
    model: DualTaskVNet,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    channels_last: bool = True,
) -> DualTaskVNet:
    """A fused eval-mode copy of ``model`` in ``dtype`` on ``device``; ``model`` is untouched.

    Raises ``ValueError`` for models whose norm cannot be folded (instance norm): use
    :func:`can_fuse` first.
    """
    if not can_fuse(model):
        raise ValueError("only BatchNorm (running statistics) or norm-free models can be fused")
    device = torch.device(device)
    memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
    fast = copy.deepcopy(model).eval()
    for layer in [m for m in fast.modules() if isinstance(m, ConvNormAct)]:
        weight, bias = _folded(layer)
        relu = isinstance(layer.act, nn.ReLU)
        layer.conv = FusedConvReLU(layer.conv, weight.float(), bias.float(), relu=relu)
        layer.norm, layer.act = nn.Identity(), nn.Identity()
    fast.to(device=device, dtype=dtype)
    fast.to(memory_format=memory_format)
    fast.fused_for_inference = True  # type: ignore[assignment]
    if device.type == "cpu":
        _enable_onednn(fast, dtype, memory_format)
    for parameter in fast.parameters():
        parameter.requires_grad_(False)
    return fast


def _enable_onednn(
    model: nn.Module, dtype: torch.dtype, memory_format: torch.memory_format
) -> None:
    """Self-check each fused layer once on a small input of its channel count.

    The inputs come from a private generator: fusing leaves torch's random state (the seeded
    MC-dropout masks drawn next) as it was, whether or not a cached copy is used instead.
    """
    generator = torch.Generator().manual_seed(0)
    for layer in model.modules():
        if isinstance(layer, FusedConvReLU):
            channels = layer.weight.shape[0 if layer.transposed else 1]
            example = torch.randn(1, channels, 4, 4, 4, generator=generator).to(dtype)
            example = example.contiguous(memory_format=memory_format)
            with torch.inference_mode():
                layer.try_onednn(example)


def mc_segmentation_logits(net: DualTaskVNet, features: list[Tensor]) -> Tensor:
    """Segmentation logits of ``net.decode(features, mc_dropout=True)``, computed faster.

    The same computation, random masks included (drawn in the same order and shapes as
    ``decode``): the dropout before the heads zeroes whole channels, so it is applied to the
    1x1x1 head's weights (per sample) instead of to the full-resolution features; the SDF head,
    which MC samples do not need, is skipped; the skip connections are added in place.
    ``features[-1]`` may have a larger batch than the skips (they broadcast).
    """
    p = net.dropout_p
    x = F.dropout3d(features[-1], p=p, training=True) if p > 0 else features[-1]
    for i, (up, stage) in enumerate(zip(net.up, net.decoder)):
        y = up(x)
        y += features[-2 - i]
        x = stage(y)
    head = net.seg_head
    if p == 0:
        return head(x)
    keep = x.new_empty((x.shape[0], x.shape[1], 1, 1, 1)).bernoulli_(1 - p).div_(1 - p)
    samples = []
    for index in range(x.shape[0]):
        weight = head.weight * keep[index].view(1, -1, 1, 1, 1)
        samples.append(F.conv3d(x[index : index + 1], weight, head.bias))
    return torch.cat(samples) if len(samples) > 1 else samples[0]
