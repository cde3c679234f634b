"""Synthetic left-atrium-like MRI phantoms: the demo data and the test data.

A phantom is a 3D MRI-like volume holding a bright blood-pool chamber (the "left atrium")
with 3-5 tapering, curved pulmonary-vein tubes, a thin dark wall around it, and textured
tissue with bright structures that are *not* labeled (a ventricle with its thick wall, a
descending aorta, small vessels) and dark lateral lung regions; then a partial-volume blur,
a smooth multiplicative bias field and Rician noise. The label (1 = left atrium) is the
chamber plus its veins, one connected component.

Geometry: the arrays of :class:`PhantomCase` are in canonical RAS+ order ``[x, y, z]``; the
grid has anisotropic spacing (in-plane 0.70-0.80 mm, slices 1.5-2.5 mm), a small rotation and
a non-zero origin. Files are written in a permuted and flipped *source* order (e.g. LPS) with
the matching affine, so reading them exercises the canonicalisation of the IO layer. The
anatomy is defined in millimetres, scaled to the field of view (unit = half its smallest
extent), so it is physically round whatever the spacing.

Randomness: the anatomy and the grid depend only on ``(seed, shape)``; the appearance
(texture, bias, noise) on ``(seed, shape, domain)``. The same seed therefore gives the same
label in every domain, and a domain is a pure appearance shift.

The grid and the tissue-class map are drawn in :mod:`napari_uamc.data.phantom_anatomy`; this
module renders them (appearance domains) and writes cases and studies.
"""

from __future__ import annotations

import os
import shutil
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from napari_uamc._atomic import atomic_path
from napari_uamc.data.phantom_anatomy import Grid, Tissue, cosine_field, sample_anatomy, sample_grid
from napari_uamc.data.study.layout import NIFTI_SUFFIX, STUDY_PARTS, StudyLayout
from napari_uamc.errors import InputError, StudyError

__all__ = [
    "DEFAULT_SHAPE",
    "DOMAINS",
    "Appearance",
    "PhantomCase",
    "case_name",
    "case_seed",
    "make_phantom",
    "resolve_domain",
    "write_case",
    "write_phantom_study",
]

#: Canonical (x, y, z) grid size of a phantom unless asked otherwise.
DEFAULT_SHAPE: tuple[int, int, int] = (96, 96, 48)
#: Smallest and largest accepted grid size along any axis.
MIN_SIZE = 16
MAX_SIZE = 1024
# The folders and files of a study that ``overwrite=True`` replaces (anything else is kept) are
# the study layout's STUDY_PARTS (imported above).


# --------------------------------------------------------------------------- appearance


@dataclass(frozen=True)
class Appearance:
    """How one domain renders the anatomy. Levels are relative to the blood pool (1.0)."""

    description: str
    tissue: float  #: mean level of the surrounding tissue
    wall: float  #: myocardium (atrial and ventricular walls)
    lung: float  #: air-filled lateral regions
    texture_amplitude: float  #: relative standard deviation of the tissue texture
    texture_mm: float  #: correlation length (Gaussian sigma) of the texture, mm
    bias_amplitude: float  #: standard deviation of the log bias field
    noise: float  #: Rician noise sigma relative to the blood pool
    gamma: float  #: contrast curve applied before bias and noise
    gain: float  #: scanner units of the blood pool


#: The appearance domains, by upper-case name. "A" is the default; "B" and "C" are shifts of
#: appearance only (same anatomy distribution), for testing fine-tuning under domain shift.
DOMAINS: dict[str, Appearance] = {
    "A": Appearance(
        description="bright blood pool, moderate noise, mild bias field (the default)",
        tissue=0.35,
        wall=0.18,
        lung=0.06,
        texture_amplitude=0.12,
        texture_mm=2.5,
        bias_amplitude=0.12,
        noise=0.04,
        gamma=1.0,
        gain=600.0,
    ),
    "B": Appearance(
        description="low blood-tissue contrast, strong bias field, twice the noise, "
        "coarse texture, gamma 0.8",
        tissue=0.60,
        wall=0.45,
        lung=0.15,
        texture_amplitude=0.20,
        texture_mm=5.0,
        bias_amplitude=0.40,
        noise=0.08,
        gamma=0.8,
        gain=250.0,
    ),
    "C": Appearance(
        description="high contrast, fine grainy texture, gamma 1.4, medium bias field",
        tissue=0.28,
        wall=0.12,
        lung=0.03,
        texture_amplitude=0.25,
        texture_mm=1.2,
        bias_amplitude=0.25,
        noise=0.05,
        gamma=1.4,
        gain=1500.0,
    ),
}

#: Blood level of each unlabeled bright structure relative to the atrial blood pool.
VENTRICLE_BLOOD = 0.95
AORTA_BLOOD = 1.05
VESSEL_BLOOD = 0.9
#: Share of the texture amplitude that modulates walls/lungs and the blood pool.
WALL_TEXTURE_SHARE = 0.5
BLOOD_TEXTURE_SHARE = 0.2
#: Relative amplitude of the slow, organ-scale variation of the tissue.
ORGAN_VARIATION = 0.10
#: Partial-volume blur (Gaussian sigma, voxels) applied before bias and noise.
PSF_SIGMA_VOXELS = 0.5
#: Lowest clean intensity before gamma, so gamma never sees zero.
MIN_LEVEL = 0.01


def resolve_domain(domain: str) -> str:
    """The canonical (upper-case) domain name; :class:`InputError` for an unknown one."""
    key = str(domain).strip().upper()
    if key not in DOMAINS:
        known = ", ".join(DOMAINS)
        raise InputError(f"unknown phantom domain {domain!r}: known domains are {known}")
    return key


# --------------------------------------------------------------------------- rendering


def _smooth_noise(
    rng: np.random.Generator, shape: tuple[int, ...], sigma: np.ndarray
) -> np.ndarray:
    """Gaussian-filtered white noise scaled to unit standard deviation."""
    noise = ndimage.gaussian_filter(
        rng.standard_normal(shape, dtype=np.float32), sigma, truncate=3.0
    )
    return noise / np.float32(max(float(noise.std()), 1e-6))


def _render(
    rng: np.random.Generator, classes: np.ndarray, grid: Grid, look: Appearance
) -> np.ndarray:
    """An MRI-like image of the tissue-class map in one appearance domain."""
    levels = np.zeros(len(Tissue), dtype=np.float32)
    levels[Tissue.TISSUE] = look.tissue
    levels[Tissue.LUNG] = look.lung
    levels[Tissue.WALL] = look.wall
    levels[Tissue.VENTRICLE] = VENTRICLE_BLOOD
    levels[Tissue.AORTA] = AORTA_BLOOD
    levels[Tissue.VESSEL] = VESSEL_BLOOD
    levels[Tissue.ATRIUM] = 1.0
    share = np.full(len(Tissue), BLOOD_TEXTURE_SHARE, dtype=np.float32)
    share[Tissue.TISSUE] = 1.0
    share[Tissue.LUNG] = share[Tissue.WALL] = WALL_TEXTURE_SHARE

    coords = grid.coordinates()
    texture = _smooth_noise(rng, grid.shape, look.texture_mm / grid.spacing)
    texture *= np.float32(look.texture_amplitude)
    texture += np.float32(ORGAN_VARIATION) * cosine_field(rng, coords, (1.0, 3.0))
    image = levels[classes] * (1 + share[classes] * texture)
    del texture
    image = ndimage.gaussian_filter(image, PSF_SIGMA_VOXELS, truncate=3.0)
    image = np.maximum(image, np.float32(MIN_LEVEL)) ** np.float32(look.gamma)
    bias = cosine_field(rng, coords, (0.3, 1.2), terms=4)
    image *= np.exp(np.float32(look.bias_amplitude) * bias)
    sigma = np.float32(look.noise)
    real = image + sigma * rng.standard_normal(grid.shape, dtype=np.float32)
    imaginary = sigma * rng.standard_normal(grid.shape, dtype=np.float32)
    image = np.hypot(real, imaginary)
    return (np.float32(look.gain) * image).astype(np.float32)


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class PhantomCase:
    """One phantom: image and label in canonical RAS+ order with their canonical affine.

    ``source_axcodes`` is the storage order of the written file; :meth:`to_source` and
    :attr:`source_affine` give the arrays and affine in that order.
    """

    name: str
    image: np.ndarray
    label: np.ndarray
    affine: np.ndarray
    source_axcodes: tuple[str, str, str] = ("R", "A", "S")
    domain: str = "A"
    seed: int = 0

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.image.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along x, y, z."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (float(norms[0]), float(norms[1]), float(norms[2]))

    def _to_source_ornt(self) -> np.ndarray:
        from nibabel.orientations import axcodes2ornt, ornt_transform

        return ornt_transform(axcodes2ornt(("R", "A", "S")), axcodes2ornt(self.source_axcodes))

    @property
    def source_affine(self) -> np.ndarray:
        """The affine of the arrays in source order (what the file stores)."""
        from nibabel.orientations import inv_ornt_aff

        return self.affine @ inv_ornt_aff(self._to_source_ornt(), self.shape)

    def to_source(self, array: np.ndarray) -> np.ndarray:
        """A canonical array of this case's grid in the file's storage order."""
        from nibabel.orientations import apply_orientation

        return np.ascontiguousarray(apply_orientation(array, self._to_source_ornt()))


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    try:
        values = tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        raise InputError(f"phantom shape must be three integers, not {shape!r}") from None
    if len(values) != 3 or any(n != s for n, s in zip(values, shape)):
        raise InputError(f"phantom shape must be three integers (x, y, z), not {shape!r}")
    if not all(MIN_SIZE <= n <= MAX_SIZE for n in values):
        raise InputError(
            f"phantom shape {values} is out of range: each size must be "
            f"between {MIN_SIZE} and {MAX_SIZE} voxels"
        )
    return values  # type: ignore[return-value]


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"phantom seed must be a non-negative integer, not {seed!r}")
    return int(seed)


def case_seed(seed: int, index: int) -> int:
    """The seed of case ``index`` of a study made with ``seed``."""
    return int(np.random.SeedSequence([_check_seed(seed), int(index)]).generate_state(1)[0])


def case_name(domain: str, seed: int, index: int) -> str:
    """``phantom_A_0000_000``: domain, study seed and index, so studies never collide."""
    return f"phantom_{resolve_domain(domain)}_{seed:04d}_{index:03d}"


def make_phantom(
    seed: int,
    shape: Sequence[int] = DEFAULT_SHAPE,
    domain: str = "A",
    name: str | None = None,
) -> PhantomCase:
    """A deterministic phantom for ``(seed, shape, domain)``; see the module docstring.

    ``shape`` is the canonical ``(x, y, z)`` grid size in voxels; ``image`` (float32) and
    ``label`` (uint8) are in RAS+ ``[x, y, z]`` order, ``spacing`` in mm.

    Raises:
        InputError: ``seed`` is not an integer >= 0, ``shape`` is not three integers from 16 to
            1024, or ``domain`` is not one of :data:`DOMAINS`.
    """
    seed = _check_seed(seed)
    shape = _check_shape(shape)
    domain = resolve_domain(domain)
    anatomy_rng = np.random.default_rng([seed, 0])
    grid = sample_grid(anatomy_rng, shape)
    classes = sample_anatomy(anatomy_rng, grid)
    look_rng = np.random.default_rng([seed, 1, zlib.crc32(domain.encode())])
    image = _render(look_rng, classes, grid, DOMAINS[domain])
    label = (classes == Tissue.ATRIUM).astype(np.uint8)
    return PhantomCase(
        name=name or f"phantom_{domain}_{seed}",
        image=image,
        label=label,
        affine=grid.affine,
        source_axcodes=grid.source_axcodes,
        domain=domain,
        seed=seed,
    )


# --------------------------------------------------------------------------- writing


def _save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Write a NIfTI file atomically (temporary file in the same folder, fsync, rename)."""
    import nibabel as nib

    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    with atomic_path(path, suffix=NIFTI_SUFFIX) as temporary:
        nib.save(image, temporary)


def write_case(case: PhantomCase, study: Path, *, labeled: bool) -> None:
    """Write one case's image, ground truth and (if ``labeled``) accepted label."""
    affine = case.source_affine
    layout = StudyLayout(Path(study))
    _save_nifti(case.to_source(case.image), affine, layout.image_file(case.name))
    label = case.to_source(case.label)
    _save_nifti(label, affine, layout.ground_truth_file(case.name))
    if labeled:
        _save_nifti(label, affine, layout.label_file(case.name))


def _prepare_folder(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise StudyError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise StudyError(
                f"{out} is not empty: choose a new folder, or pass --force (overwrite=True) "
                f"to replace the study in it ({', '.join(STUDY_PARTS)})"
            )
        for part in STUDY_PARTS:
            path = out / part
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    layout = StudyLayout(out)
    for folder in (layout.images_dir, layout.labels_dir, layout.ground_truth_dir):
        folder.mkdir(parents=True, exist_ok=True)


def write_phantom_study(
    out: str | os.PathLike[str],
    *,
    cases: int,
    seed: int = 0,
    shape: Sequence[int] = DEFAULT_SHAPE,
    labeled: int | None = None,
    domain: str = "A",
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a study of ``cases`` phantoms in the MSD layout and return its folder.

    Every case gets ``imagesTr/<case>.nii.gz`` and ``groundTruth/<case>.nii.gz``; the first
    ``labeled`` (default: all) also ``labelsTr/<case>.nii.gz``. Case ``i`` is
    ``make_phantom(case_seed(seed, i), shape, domain)``. ``out`` must be empty or absent
    unless ``overwrite`` (then the study parts in it are replaced). ``progress(done, total)``
    is called after each case.

    Raises:
        InputError: ``cases`` < 1, ``labeled`` not an integer from 0 to ``cases``, or a bad
            ``seed``, ``shape`` or ``domain`` (as :func:`make_phantom`); nothing is written.
        StudyError: ``out`` is a file, or a non-empty folder without ``overwrite``; or the
            study's records (``dataset.json``, ``state.json``) cannot be written.
        OSError: a phantom file or folder cannot be written or replaced (not wrapped).
    """
    if isinstance(cases, bool) or not isinstance(cases, (int, np.integer)) or cases < 1:
        raise InputError(f"number of phantom cases must be at least 1, not {cases!r}")
    labeled = cases if labeled is None else labeled
    if isinstance(labeled, bool) or not isinstance(labeled, (int, np.integer)):
        raise InputError(f"number of labeled cases must be an integer, not {labeled!r}")
    if not 0 <= labeled <= cases:
        raise InputError(f"labeled cases must be between 0 and {cases} (the cases), not {labeled}")
    seed = _check_seed(seed)
    shape = _check_shape(shape)
    domain = resolve_domain(domain)
    out = Path(out)
    _prepare_folder(out, overwrite)
    for index in range(cases):
        case = make_phantom(case_seed(seed, index), shape, domain, case_name(domain, seed, index))
        write_case(case, out, labeled=index < labeled)
        if progress is not None:
            progress(index + 1, cases)
    _register_study(out, domain=domain, seed=seed, shape=shape)
    return out


def _register_study(out: Path, *, domain: str, seed: int, shape: tuple[int, int, int]) -> None:
    """Let the study layer write ``dataset.json`` and ``.uamc/state.json`` for the files."""
    from napari_uamc.data.study import Study

    Study.create(
        out,
        name=f"phantoms-{domain}",
        description=(
            f"Synthetic left-atrium-like MRI phantoms (napari-uamc), domain {domain}, "
            f"seed {seed}, shape {shape[0]}x{shape[1]}x{shape[2]}"
        ),
        exist_ok=True,
    )
