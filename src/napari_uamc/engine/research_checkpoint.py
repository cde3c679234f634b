"""Load V-Net weights of the UA-MT / DTC research code into :class:`DualTaskVNet`.

Their ``VNet`` names its stages ``block_one`` .. ``block_five`` (encoder), ``block_one_dw`` ..
``block_four_dw`` (downsampling), ``block_five_up`` .. ``block_eight_up`` (upsampling) and
``block_six`` .. ``block_nine`` (decoder); each holds an ``nn.Sequential`` called ``conv`` whose
entries are Conv3d / norm / ReLU in turn (``conv.0`` conv, ``conv.1`` norm, ``conv.2`` ReLU,
... with batch norm; no norm entry without). The heads differ:

- UA-MT: ``out_conv`` is the segmentation head (C logits, softmax); there is no SDF head.
- DTC (``vnet_sdf``): ``out_conv`` is the tanh SDF head and ``out_conv2`` the segmentation head.
  DTC trains LA with one sigmoid output; a one-channel sigmoid head is converted exactly to our
  two-class softmax head (logits ``[0, s]`` give ``softmax_1 = sigmoid(s)``).

Module kinds inside each ``conv`` Sequential are recognised from the tensors (a 5-D weight is a
conv; anything else is a norm), so batch, affine instance and no norm all map.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from napari_uamc.errors import CheckpointError

#: Research stage blocks -> our module path (stage blocks hold several conv layers).
_STAGE_BLOCKS = {
    "block_one": "encoder.0",
    "block_two": "encoder.1",
    "block_three": "encoder.2",
    "block_four": "encoder.3",
    "block_five": "encoder.4",
    "block_six": "decoder.0",
    "block_seven": "decoder.1",
    "block_eight": "decoder.2",
    "block_nine": "decoder.3",
}
#: Research single-layer resampling blocks -> our module path.
_RESAMPLE_BLOCKS = {
    "block_one_dw": "down.0",
    "block_two_dw": "down.1",
    "block_three_dw": "down.2",
    "block_four_dw": "down.3",
    "block_five_up": "up.0",
    "block_six_up": "up.1",
    "block_seven_up": "up.2",
    "block_eight_up": "up.3",
}
_BLOCK_KEY = re.compile(r"^(block_[a-z]+(?:_dw|_up)?)\.conv\.(\d+)\.([A-Za-z_]+)$")
_HEAD_KEY = re.compile(r"^(out_conv2?)\.(weight|bias)$")
_CONV_WEIGHT_DIMS = 5
_SHOWN_KEYS = 5


@dataclass(frozen=True)
class ResearchLoadReport:
    """What :func:`load_research_state_dict` did."""

    layout: str  # "dtc" (out_conv = SDF head, out_conv2 = segmentation head) or "ua-mt"
    loaded: tuple[str, ...]  # our parameter/buffer names that received values
    missing: tuple[str, ...]  # our names the checkpoint had nothing for (left as they were)
    sigmoid_head_converted: bool  # a one-channel sigmoid segmentation head became 2-class softmax


def load_research_state_dict(
    model: nn.Module, state_dict: Mapping[str, Tensor]
) -> ResearchLoadReport:
    """Copy a UA-MT/DTC ``VNet`` state dict into ``model`` (a ``DualTaskVNet``) in place.

    A leading ``module.`` (DataParallel) is stripped. Our parameters the checkpoint lacks (the SDF
    head for UA-MT) are left as they were and listed in the report's ``missing``.

    Raises:
        CheckpointError: ``state_dict`` is not a mapping, is empty, or has keys the mapping does not
            know; a block has a norm before its first conv, or a resampling block has two convs;
            tensors have no place in ``model`` (other norm or depth) or another shape (other width
            or classes). Messages name a few of the keys; ``model`` is unchanged.
    """
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(
            f"A research V-Net checkpoint must be a state dict, not {type(state_dict).__name__}"
        )
    source = {_strip_prefix(key): value for key, value in state_dict.items()}
    unknown = [key for key in source if not _is_research_key(key)]
    if unknown:
        raise CheckpointError(
            "Not a UA-MT/DTC V-Net state dict: unknown key(s) " + _few(unknown)
        )
    if not source:
        raise CheckpointError("The research V-Net state dict is empty")

    mapped = _map_blocks(source)
    layout = "dtc" if "out_conv2.weight" in source else "ua-mt"
    target = model.state_dict()
    converted = _map_heads(source, layout, target, mapped)

    unexpected = [name for name in mapped if name not in target]
    if unexpected:
        raise CheckpointError(
            "The research V-Net does not fit this network (different norm or depth?): "
            "no place for " + _few(unexpected)
        )
    mismatched = [
        f"{name} {tuple(value.shape)} vs {tuple(target[name].shape)}"
        for name, value in mapped.items()
        if tuple(value.shape) != tuple(target[name].shape)
    ]
    if mismatched:
        raise CheckpointError(
            "The research V-Net has other layer sizes (width or classes differ): "
            + _few(mismatched)
        )
    model.load_state_dict(mapped, strict=False)
    missing = tuple(name for name in target if name not in mapped)
    return ResearchLoadReport(layout, tuple(mapped), missing, converted)


def _strip_prefix(key: str) -> str:
    return key[len("module."):] if key.startswith("module.") else key


def _is_research_key(key: str) -> bool:
    if _HEAD_KEY.match(key):
        return True
    match = _BLOCK_KEY.match(key)
    return bool(match) and (match.group(1) in _STAGE_BLOCKS or match.group(1) in _RESAMPLE_BLOCKS)


def _few(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN_KEYS])
    more = len(items) - _SHOWN_KEYS
    return shown + (f" (and {more} more)" if more > 0 else "")


def _map_blocks(source: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Our names for every ``block_*`` tensor, pairing each norm with the conv before it."""
    modules: dict[str, dict[int, dict[str, Tensor]]] = defaultdict(lambda: defaultdict(dict))
    for key, value in source.items():
        match = _BLOCK_KEY.match(key)
        if match:
            block, index, tensor_name = match.groups()
            modules[block][int(index)][tensor_name] = value

    mapped: dict[str, Tensor] = {}
    for block, entries in modules.items():
        layer = -1
        for index in sorted(entries):
            tensors = entries[index]
            weight = tensors.get("weight")
            is_conv = weight is not None and weight.dim() == _CONV_WEIGHT_DIMS
            if is_conv:
                layer += 1
            if layer < 0:
                raise CheckpointError(
                    f"Research V-Net block {block!r}: a norm layer (conv.{index}) "
                    "comes before any conv"
                )
            if block in _STAGE_BLOCKS:
                prefix = f"{_STAGE_BLOCKS[block]}.{layer}"
            elif layer == 0:
                prefix = _RESAMPLE_BLOCKS[block]
            else:
                raise CheckpointError(
                    f"Research V-Net block {block!r} has more than one conv (conv.{index})"
                )
            part = "conv" if is_conv else "norm"
            for tensor_name, value in tensors.items():
                mapped[f"{prefix}.{part}.{tensor_name}"] = value
    return mapped


def _map_heads(
    source: Mapping[str, Tensor],
    layout: str,
    target: Mapping[str, Tensor],
    mapped: dict[str, Tensor],
) -> bool:
    """Add the heads to ``mapped``; True when a sigmoid head was converted to softmax."""
    heads = {"out_conv2": "seg_head", "out_conv": "sdf_head"} if layout == "dtc" else {
        "out_conv": "seg_head"
    }
    converted = False
    for research, ours in heads.items():
        for tensor_name in ("weight", "bias"):
            key = f"{research}.{tensor_name}"
            if key not in source:
                continue
            value = source[key]
            wanted = target.get(f"{ours}.{tensor_name}")
            if (
                ours == "seg_head"
                and wanted is not None
                and wanted.shape[0] == 2
                and value.shape[0] == 1
            ):
                # softmax([0, s]) = [1 - sigmoid(s), sigmoid(s)]: the sigmoid head exactly.
                value = torch.cat([torch.zeros_like(value), value], dim=0)
                converted = True
            mapped[f"{ours}.{tensor_name}"] = value
    return converted
