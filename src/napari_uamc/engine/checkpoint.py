"""Model files: a state dict plus JSON metadata, loaded safely with ``weights_only=True``.

A napari-uamc model file is ``torch.save`` of a plain dict::

    {"format": "napari-uamc-model", "format_version": 1, "meta_json": "<JSON>",
     "state_dict": {name: tensor, ...}}

Only strings, ints and tensors: nothing executable, so ``torch.load(..., weights_only=True)``
reads it and refuses any file that would need to run code. The metadata (:class:`ModelMeta`)
holds what inference and fine-tuning need to use the weights correctly: classes, width, the
training spacing and patch, the intensity normalisation, the config and the lineage.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from napari_uamc._atomic import atomic_path
from napari_uamc.engine.model import DualTaskVNet
from napari_uamc.errors import CheckpointError

FORMAT = "napari-uamc-model"
FORMAT_VERSION = 1
NORMALIZATION_ZSCORE = "zscore"
#: Where the packaged default model lives inside the package.
DEFAULT_MODEL_PACKAGE = "napari_uamc"
DEFAULT_MODEL_RESOURCE = "models/default.pt"
#: Parameter-name prefixes of the UA-MT/DTC research V-Net (to recognise its bare state dicts).
_RESEARCH_PREFIXES = ("block_one.", "block_one_dw.", "out_conv.", "out_conv2.")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class ModelMeta:
    """JSON-able description of a model file (everything but the weights).

    ``spacing`` is the training voxel size in mm along canonical (x, y, z); ``patch`` the
    training patch in voxels; ``history`` one dict per training/fine-tuning run; ``parent`` the
    version (or path) this model was fine-tuned from.
    """

    n_classes: int = 2
    class_names: list[str] = field(default_factory=lambda: ["background", "foreground"])
    in_channels: int = 1
    width: int = 16
    norm: str = "batch"
    dropout: float = 0.5
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    normalization: str = NORMALIZATION_ZSCORE
    patch: tuple[int, int, int] = (112, 112, 80)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    parent: str | None = None
    version: str | None = None
    trained_on: str = ""
    synthetic_only: bool = False
    created: str = field(default_factory=_now)
    extra: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        self.spacing = tuple(float(s) for s in self.spacing)  # type: ignore[assignment]
        self.patch = tuple(int(p) for p in self.patch)  # type: ignore[assignment]
        self.class_names = [str(name) for name in self.class_names]
        if not isinstance(self.n_classes, int) or self.n_classes < 2:
            raise CheckpointError(f"n_classes must be an integer >= 2, not {self.n_classes!r}")
        if len(self.class_names) != self.n_classes:
            raise CheckpointError(
                f"class_names {self.class_names} has {len(self.class_names)} names for "
                f"{self.n_classes} classes"
            )
        if len(self.spacing) != 3 or not all(s > 0 for s in self.spacing):
            raise CheckpointError(
                f"spacing must be three positive numbers (mm), not {self.spacing}"
            )
        if len(self.patch) != 3 or not all(p > 0 for p in self.patch):
            raise CheckpointError(f"patch must be three positive sizes, not {self.patch}")
        if self.normalization != NORMALIZATION_ZSCORE:
            raise CheckpointError(
                f"unknown intensity normalisation {self.normalization!r} "
                "(only 'zscore' is supported)"
            )

    @classmethod
    def for_model(cls, model: DualTaskVNet, **fields: Any) -> ModelMeta:
        """Metadata whose architecture fields are read from ``model``."""
        arch = dict(
            n_classes=model.n_classes,
            in_channels=model.in_channels,
            width=model.width,
            norm=model.norm,
            dropout=model.dropout_p,
        )
        if "class_names" not in fields and model.n_classes != 2:
            arch["class_names"] = ["background"] + [f"class_{c}" for c in range(1, model.n_classes)]
        return cls(**{**arch, **fields})

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["spacing"] = list(self.spacing)
        data["patch"] = list(self.patch)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelMeta:
        """Inverse of :meth:`to_dict`; unknown keys (a newer writer) are kept in ``extra``."""
        names = {f.name for f in dataclasses.fields(cls)}
        known = {key: value for key, value in data.items() if key in names}
        unknown = {key: value for key, value in data.items() if key not in names}
        if unknown:
            known["extra"] = {**dict(known.get("extra") or {}), **unknown}
        try:
            return cls(**known)
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"invalid model metadata: {error}") from None

    def build_model(self) -> DualTaskVNet:
        """A freshly initialised network with this architecture."""
        return DualTaskVNet(
            in_channels=self.in_channels,
            n_classes=self.n_classes,
            width=self.width,
            norm=self.norm,
            dropout=self.dropout,
        )


# ----------------------------------------------------------------------------------------------
def save_checkpoint(
    path: str | os.PathLike[str], model: DualTaskVNet, meta: ModelMeta, *, half: bool = False
) -> Path:
    """Write ``model``'s weights and ``meta`` to ``path`` atomically (temp file, fsync, rename).

    ``half=True`` stores floating-point tensors as float16 (half the size, for the packaged
    model); :func:`load_checkpoint` restores float32. ``meta.spacing`` is in mm along (x, y, z).

    Raises:
        CheckpointError: ``meta``'s architecture (classes, channels, width, norm) is not ``model``'s.
        OSError: the file cannot be written (not wrapped; an existing file is left as it was).
    """
    path = Path(path)
    check_meta_fits(model, meta)
    state = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu")
        if half and tensor.is_floating_point():
            tensor = tensor.to(torch.float16)
        state[name] = tensor.contiguous().clone()
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "meta_json": meta.to_json(),
        "state_dict": state,
    }
    # a file object, not a name: torch would name the archive's records after the temp file
    with atomic_path(path, parents=True) as temp, open(temp, "wb") as handle:
        torch.save(payload, handle)
    return path


def check_meta_fits(model: DualTaskVNet, meta: ModelMeta) -> None:
    """Raise :class:`CheckpointError` if ``meta``'s architecture is not ``model``'s."""
    pairs = {
        "n_classes": (meta.n_classes, model.n_classes),
        "in_channels": (meta.in_channels, model.in_channels),
        "width": (meta.width, model.width),
        "norm": (meta.norm, model.norm),
    }
    wrong = [
        f"{key} {have!r} (model: {want!r})"
        for key, (have, want) in pairs.items()
        if have != want
    ]
    if wrong:
        raise CheckpointError("the metadata does not describe this network: " + ", ".join(wrong))


def _read_payload(path: str | os.PathLike[str], device: str | torch.device, mmap: bool) -> dict:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"model file not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"model path is not a file: {path}")
    try:
        payload = torch.load(path, map_location=device, weights_only=True, mmap=mmap)
    except Exception as error:  # torch raises many types for bad files
        text = str(error)
        if "Weights only load failed" in text:
            raise CheckpointError(
                f"{path} contains Python objects other than tensors and plain data; it was not "
                "loaded, because unpickling it could run arbitrary code. It is not a napari-uamc "
                "model file."
            ) from None
        detail = text.splitlines()[0][:200] if text else "no details"
        raise CheckpointError(
            f"{path} is not a readable PyTorch model file (another kind of file, or corrupt "
            f"or truncated): {type(error).__name__}: {detail}"
        ) from None
    return _check_payload(path, payload)


def _check_payload(path: Path, payload: Any) -> dict:
    if isinstance(payload, Mapping) and payload.get("format") == FORMAT:
        version = payload.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(
                f"{path} has model format version {version!r}; this napari-uamc reads up to "
                f"{FORMAT_VERSION} (update napari-uamc)"
            )
        if not isinstance(payload.get("meta_json"), str) or not isinstance(
            payload.get("state_dict"), Mapping
        ):
            raise CheckpointError(
                f"{path} is a damaged napari-uamc model file (no metadata or weights)"
            )
        return dict(payload)
    if isinstance(payload, Mapping) and payload and all(
        isinstance(value, torch.Tensor) for value in payload.values()
    ):
        keys = [str(key).removeprefix("module.") for key in payload]
        if any(key.startswith(_RESEARCH_PREFIXES) for key in keys):
            raise CheckpointError(
                f"{path} is a bare V-Net state dict of the UA-MT/DTC research code, not a "
                "napari-uamc model file. Convert it in Python: build "
                "napari_uamc.engine.model.DualTaskVNet, call "
                "napari_uamc.engine.model.load_research_state_dict(model, torch.load(path)), "
                "then napari_uamc.engine.checkpoint.save_checkpoint with its ModelMeta "
                "(training spacing, patch, classes)."
            )
        raise CheckpointError(
            f"{path} is a bare state dict of some network ({len(keys)} tensors, e.g. "
            f"{keys[0]!r}), not a napari-uamc model file (no metadata)"
        )
    kind = type(payload).__name__
    raise CheckpointError(
        f"{path} is a PyTorch file but not a napari-uamc model file (it holds a {kind}"
        + (f" with keys {sorted(map(str, payload))[:5]}" if isinstance(payload, Mapping) else "")
        + ")"
    )


def _parse_meta(path: Path, payload: Mapping[str, Any]) -> ModelMeta:
    try:
        data = json.loads(payload["meta_json"])
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: the model metadata is not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: the model metadata is not a JSON object")
    try:
        return ModelMeta.from_dict(data)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None


def read_meta(path: str | os.PathLike[str]) -> ModelMeta:
    """The metadata of a model file without reading its weights into memory (memory-mapped).

    Raises:
        CheckpointError: as :func:`load_checkpoint`, except that the weights are not checked.
    """
    payload = _read_payload(path, "cpu", mmap=True)
    return _parse_meta(Path(path), payload)


def load_checkpoint(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[DualTaskVNet, ModelMeta]:
    """Build the network a model file describes, load its weights (as float32), in eval mode.

    Raises:
        CheckpointError: ``path`` is missing or not a file; not a readable PyTorch file, or one
            holding Python objects (refused unloaded: ``weights_only``); a bare state dict (UA-MT/DTC
            or other) or any other non-napari-uamc payload; a newer format version; missing,
            invalid or non-JSON metadata; weights that do not fit the network it describes.
        RuntimeError, AssertionError: ``device`` is unknown or unavailable (torch's own errors; it is
            not checked like :func:`~napari_uamc.engine.device.resolve_device` does).
    """
    path = Path(path)
    payload = _read_payload(path, "cpu", mmap=False)
    meta = _parse_meta(path, payload)
    try:
        model = meta.build_model()
    except Exception as error:
        raise CheckpointError(f"{path}: the metadata describes no valid network: {error}") from None
    target = model.state_dict()
    state = {}
    for name, tensor in payload["state_dict"].items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{path}: weight {name!r} is not a tensor")
        if name in target and target[name].is_floating_point():
            tensor = tensor.to(target[name].dtype)
        state[name] = tensor
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: the weights do not fit the network its metadata describes "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()
        raise CheckpointError(
            f"{path}: the weights do not fit the network its metadata describes: "
            f"{' '.join(line.strip() for line in first[:3])}"
        ) from None
    model.to(device)
    model.eval()
    return model, meta


def default_model_path() -> Path:
    """Path of the packaged default model (left atrium, trained on real LA 2018 MRI)."""
    resource = resources.files(DEFAULT_MODEL_PACKAGE).joinpath(DEFAULT_MODEL_RESOURCE)
    if not resource.is_file():
        raise CheckpointError(
            "the packaged default model is missing; train one with uamc train or pass --model"
        )
    return Path(str(resource))
