"""The correct-and-retrain loop on a shifted phantom domain: the product's promise, measured.

Start from a trained model (the packaged default, or ``--model``) and a study of domain-B
phantoms, which the model has not seen (domain A is what the default model trained on).
"Correct" k cases by accepting their true labels (``Study.accept`` with the ground truth),
fine-tune with a fixed time budget through ``finetune_study`` (the code behind ``uamc finetune``
and the plugin), and measure the mean Dice on the cases nobody corrected, before and after.

Experiments (each run is cached per fine-tune variant, k, order, replay and seed):

* ``methods``: k = 1, 2, 4 corrected in order of the model's uncertainty; supervised fine-tune,
  supervised + EMA + BatchNorm recalibration (the baseline a semi-supervised fine-tune must
  beat), UG-MCL, UG-MCL + EMA + recalibration;
* ``knobs``: k = 2, further variants (recalibration alone, the consistency weight at 1, the
  learning rate at 0.01);
* ``order``: the cases to correct drawn at random instead of by uncertainty;
* ``replay``: two domain-A cases accepted into the study as earlier corrections;
* ``real`` (``--real`` only, the default there): the default fine-tune and the one before its
  cold- and warm-start rules (``--variants`` picks any others);
* ``real-replay`` (``--real`` only): the default fine-tune with the engine's replay
  (``finetune_study(replay=...)``, engine/replay.py): the starting model's own training data (a
  warm start; the folder its record names) or labeled domain-A phantoms (a cold start); every
  other run passes ``replay=None``.
* ``real-null`` (``--real`` only): the control that teaches nothing new: no study case accepted
  (k = 0); 2 labeled cases of the model's own training data (the replay source above) accepted
  into the study instead, the default fine-tune, every study case scored. How far a fine-tune
  moves scans when it learns nothing: the noise floor of "no scan loses more than 2 points".
* ``real-random`` (``--real`` only): the default fine-tune with the 2 accepted scans drawn at
  random (seeded by s) instead of the most uncertain first.
* ``pick``: the fine-tunes ``--variants`` names, most uncertain first, on phantoms or real scans.

Every run also scores a domain-A test study after the fine-tune (forgetting). Per seed s the
studies are new phantoms (B: phantom seed 3000+s; A test: 4000+s; replay: 5000+s) and s seeds
the fine-tune and the random order.

``--real`` runs the loop on real LA 2018 scans (``../shared/data/la2018``) instead: the study of
seed s is 10 scans of the paper's ``train.list`` (lines 17 + 10 s to 26 + 10 s: never in the first
16, which a warm-start model trains on, nor in the last 4). Forgetting is scored on the starting
model's own domain: domain-A phantoms for a model that never saw a real scan (a cold start),
the last 4 scans of ``train.list`` otherwise (a warm start). The report goes to the section
``loop-la2018-cold`` or ``loop-la2018-warm``. With ``--studies held-out`` the studies come from
la2018-val16 instead, the last 16 scans of ``train.list``, which the packaged model never trained
on (seed s: 10 of them from the 6 s-th on; forgetting: the other 6): the loop as a user of the
packaged model runs it (section ``loop-la2018-warm-heldout``).

    python benchmarks/bench_loop.py --threads 1                 # everything (hours on 2 cores)
    python benchmarks/bench_loop.py --experiments methods --k 2 --seeds 0
    python benchmarks/bench_loop.py --cached --write             # tables from the cache, into docs/
    python benchmarks/bench_loop.py --smoke                      # seconds; what CI runs
    python benchmarks/bench_loop.py --real --seeds 0,1,2 --threads 1            # cold start
    python benchmarks/bench_loop.py --real --model WARM.pt --k 2 --seeds 0,1,2  # warm start
    python benchmarks/bench_loop.py --real --studies held-out --model src/napari_uamc/models/default.pt \
        --iterations 280 --k 2 --seeds 0,1,2                    # the packaged model, as a user runs it
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402

BENCH = "loop"
SUPERVISED_TERMS = ("dis", "seg")
ALL_TERMS = ("ctc", "dis", "itc", "seg")
#: The packaged default model's own terms (DTC): consistency without the teacher's T passes.
DTC_TERMS = ("ctc", "dis", "seg")


@dataclass(frozen=True)
class Variant:
    """A fine-tune configuration: ``finetune_study`` overrides."""

    label: str
    overrides: dict[str, Any]
    #: the ceiling of what the unaccepted cases could teach: they are accepted too, with their
    #: expert labels, and still scored as the uncorrected cases (a bound, not a fine-tune to ship)
    oracle: bool = False


def _variant(label: str, terms: tuple[str, ...], bn: bool, ema: bool, oracle: bool = False, **extra: Any) -> Variant:
    return Variant(label, {"terms": list(terms), "bn_recalibration": bn, "keep_ema": ema, **extra}, oracle)


VARIANTS: dict[str, Variant] = {
    "sup": _variant("supervised (seg + dis)", SUPERVISED_TERMS, False, False),
    "sup-bn": _variant("supervised + BN recalibration", SUPERVISED_TERMS, True, False),
    "sup-ema-bn": _variant("supervised + EMA + BN recalibration (baseline; a cold start's default)", SUPERVISED_TERMS,
                           True, True),
    "sup-ema": _variant("supervised + EMA, no BN recalibration", SUPERVISED_TERMS, False, True),
    "sup-ema-bn-oracle": _variant("supervised + EMA + BN recalibration, every other case accepted with its expert "
                                  "label too (the ceiling of what they could teach)", SUPERVISED_TERMS, True, True,
                                  oracle=True),
    "sup-ema-bn-nocold": _variant("supervised + EMA + BN recalibration as before (model's spacing, lr 0.001)",
                                  SUPERVISED_TERMS, True, True, cold_start_rules=False, anchors=False),
    "sup-ema-bn-anchors-lr0003": _variant("supervised + EMA + BN recalibration, with anchors, lr 0.0003",
                                          SUPERVISED_TERMS, True, True, anchors=True, finetune_lr=0.0003),
    "sup-ema-bn-anchors": _variant("supervised + EMA + BN recalibration, with anchors", SUPERVISED_TERMS, True,
                                   True, anchors=True),
    "sup-ema-bn-lr0003": _variant("supervised + EMA + BN recalibration, lr 0.0003", SUPERVISED_TERMS, True, True,
                                  finetune_lr=0.0003),
    "sup-ema-bn-lr001": _variant("supervised + EMA + BN recalibration, lr 0.001 always", SUPERVISED_TERMS,
                                 True, True, finetune_lr=0.001),
    "ugmcl": _variant("UG-MCL", ALL_TERMS, False, False),
    "ugmcl-bn": _variant("UG-MCL + BN recalibration", ALL_TERMS, True, False),
    "ugmcl-ema-bn": _variant("UG-MCL + EMA + BN recalibration", ALL_TERMS, True, True),
    "ugmcl-l1-ema-bn": _variant("UG-MCL, lambda 1, + EMA + BN recalibration", ALL_TERMS, True, True,
                                consistency=1.0),
    "dtc-ema-bn": _variant("seg + dis + ctc (DTC) + EMA + BN recalibration", DTC_TERMS, True, True),
    "ugmcl-t2-ema-bn": _variant("UG-MCL, T = 2, + EMA + BN recalibration", ALL_TERMS, True, True,
                                mc_samples=2),
    "sup-ema-bn-fresh": _variant("supervised + EMA + BN recalibration, newly initialised weights", SUPERVISED_TERMS,
                                 True, True, fresh_weights=True),
    "sup-ema-bn-decay560": _variant("supervised + EMA + BN recalibration, learning rate x 0.1 from step 560",
                                    SUPERVISED_TERMS, True, True, lr_step=560),
    "copypaste-ema-bn": _variant("copy-paste (1 accepted + 1 other patch, whole-case teacher targets) + EMA + "
                                 "BN recalibration", SUPERVISED_TERMS, True, True, copy_paste=True,
                                 teacher_refresh=25, batch_size=2, labeled_batch_size=1),
    "sup-ema-bn-lr01": _variant("supervised + EMA + BN recalibration, lr 0.01 always", SUPERVISED_TERMS, True,
                                True, finetune_lr=0.01),
    "ugmcl-ema-bn-lr01": _variant("UG-MCL + EMA + BN recalibration, lr 0.01", ALL_TERMS, True, True,
                                  finetune_lr=0.01),
    "ugmcl-cached-ema-bn": _variant("UG-MCL, whole-case teacher targets, + EMA + BN recalibration", ALL_TERMS,
                                    True, True, teacher_refresh=25, batch_size=3),
    "ugmcl-cached-l1-ema-bn": _variant("UG-MCL, whole-case teacher targets, lambda 1, + EMA + BN recalibration",
                                       ALL_TERMS, True, True, teacher_refresh=25, batch_size=3, consistency=1.0),
    "ugmcl-cached-l1-gate-ema-bn": _variant("UG-MCL, whole-case teacher targets gated by plausibility, lambda 1, + "
                                            "EMA + BN recalibration", ALL_TERMS, True, True, teacher_refresh=25,
                                            batch_size=3, consistency=1.0, target_gate=True),
    "ugmcl-cached-l1-b11-ema-bn": _variant("UG-MCL, whole-case teacher targets, lambda 1, 1 accepted + 1 other "
                                           "patch a step, + EMA + BN recalibration", ALL_TERMS, True, True,
                                           teacher_refresh=25, batch_size=2, labeled_batch_size=1, consistency=1.0),
    "ugmcl-cached-l1-b11-gate-ema-bn": _variant("UG-MCL, whole-case teacher targets gated by plausibility, lambda 1, "
                                                "1 accepted + 1 other patch a step, + EMA + BN recalibration",
                                                ALL_TERMS, True, True, teacher_refresh=25, batch_size=2,
                                                labeled_batch_size=1, consistency=1.0, target_gate=True),
}
BASELINE, SEMI = "sup-ema-bn", "ugmcl-ema-bn"
#: Fine-tunes that --real runs unless --variants says otherwise: the default (a cold start
#: relearns at a new spacing and rate, ``finetune.COLD_START_DICE``), the fine-tune as it was
#: before those rules, and a warm start that also trains on anchors.
REAL_VARIANTS = (BASELINE, "sup-ema-bn-nocold", "sup-ema-bn-anchors")
ORDERS = ("uncertainty", "random")


@dataclass(frozen=True)
class Experiment:
    name: str
    variants: tuple[str, ...]
    ks: tuple[int, ...] | None  # None: the --k values
    order: str
    replay: bool
    null: bool = False  # the control: k = 0, the replay source's cases accepted into the study


EXPERIMENTS: dict[str, Experiment] = {
    "methods": Experiment("methods", ("sup", BASELINE, "ugmcl", SEMI), None, "uncertainty", False),
    "knobs": Experiment("knobs", ("sup-bn", "ugmcl-bn", "dtc-ema-bn", "ugmcl-t2-ema-bn",
                                  "ugmcl-l1-ema-bn", "sup-ema-bn-lr01", "ugmcl-ema-bn-lr01"),
                        (2,), "uncertainty", False),
    "order": Experiment("order", (BASELINE, SEMI), None, "random", False),
    "replay": Experiment("replay", (BASELINE, SEMI), (2,), "uncertainty", True),
    # --real: the default fine-tune against both fixed learning rates (the evidence for the
    # cold-start rule, finetune.COLD_START_DICE)
    "real": Experiment("real", tuple(VARIANTS), None, "uncertainty", False),  # --variants picks
    # --real: earlier corrections replayed: the starting model's own training scans (a warm
    # start) or domain-A phantoms (a cold start) accepted into the study beside the k new ones
    "real-replay": Experiment("real-replay", (BASELINE, "ugmcl-cached-l1-gate-ema-bn"), (2,), "uncertainty", True),
    # --real: nothing new to learn (k = 0; 2 of the model's own training cases accepted instead)
    "real-null": Experiment("real-null", (BASELINE,), (0,), "uncertainty", True, null=True),
    # --real: the k accepted scans drawn at random instead of the most uncertain (what the choice costs)
    "real-random": Experiment("real-random", (BASELINE,), (2,), "random", False),
    # any fine-tune on any data, most uncertain first (--variants picks; "real" is this on real scans)
    "pick": Experiment("pick", tuple(VARIANTS), None, "uncertainty", False),
}
#: Phantom seeds of the shifted study, the domain-A test study and the replay cases (+ seed).
B_DATA_SEED, A_TEST_SEED, REPLAY_SEED = 3000, 4000, 5000
#: Random-order stream (with the run's seed).
ORDER_STREAM = 17


@dataclass(frozen=True)
class Setup:
    """What changes the results (the cache key)."""

    model_sha: str
    shape: tuple[int, int, int] = (96, 96, 48)
    cases: int = 10
    domain: str = "B"
    forgetting_cases: int = 4
    replay_cases: int = 2
    minutes: float | None = 3.0
    iterations: int | None = None
    mc_samples: int = 8
    device: str = "cpu"
    #: "phantoms", or "la2018": the real scans (``shape`` and ``domain`` then unused)
    data: str = "phantoms"
    #: real scans only: "cold" (the starting model never saw a real scan) or "warm"
    start: str = ""
    #: real scans only: "" (train.list lines 17 on) or "held-out" (la2018-val16, ``held_out_split``)
    studies: str = ""

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        if values["data"] == "phantoms":  # phantom caches keep the key they had before --real
            del values["data"], values["start"]
        if not values["studies"]:  # and real ones the key they had before --studies
            del values["studies"]
        return values

    @property
    def real(self) -> bool:
        return self.data == "la2018"


SMOKE = dict(shape=(32, 32, 32), cases=3, forgetting_cases=1, replay_cases=1, minutes=None,
             iterations=2, mc_samples=2)
SMOKE_KS, DEFAULT_KS = (1,), (1, 2, 4)
#: Fine-tunes a smoke run tries (one per experiment at least), to stay within seconds.
SMOKE_VARIANTS = ("sup", BASELINE, SEMI, "ugmcl-bn")
SMOKE_SEEDS, DEFAULT_SEEDS = (0,), (0, 1)


def file_sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


# ------------------------------------------------------------------------------------- data
#: The real LA 2018 scans (research layout, ``train.list`` order).
LA2018 = common.REPO_ROOT.parent / "shared" / "data" / "la2018"
#: train.list lines of the real studies: the first 16 train a warm-start model, the last 4 score
#: its forgetting; a seed's study is the next 10 lines after those of the seeds before it.
REAL_FIRST_STUDY_LINE, REAL_FORGETTING_CASES = 16, 4
#: ``--studies held-out``: the packaged model's validation split, la2018-val16 (the last 16 scans
#: of train.list, which it never trained on); seed s's study starts this many scans later.
HELD_OUT_CASES, HELD_OUT_SEED_STEP = 16, 6


def real_case_names(data: Path = LA2018) -> list[str]:
    """Scan names of ``train.list``, in its order."""
    path = data / "train.list"
    if not path.is_file():
        raise SystemExit(f"--real needs the LA 2018 scans with their train.list at {data}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def held_out_split(seed: int, cases: int, data: Path = LA2018) -> tuple[list[str], list[str]]:
    """``--studies held-out``: seed ``seed``'s study (``cases`` scans of la2018-val16, from scan
    ``6 s`` on, wrapping round) and the split's other scans (its forgetting set)."""
    held_out = real_case_names(data)[-HELD_OUT_CASES:]
    if cases >= HELD_OUT_CASES:
        raise SystemExit(f"--studies held-out: a study of {cases} leaves none of the {HELD_OUT_CASES} held-out "
                         "scans to score forgetting on")
    start = HELD_OUT_SEED_STEP * seed
    study = [held_out[(start + i) % HELD_OUT_CASES] for i in range(cases)]
    return study, [n for n in held_out if n not in study]


def real_study_cases(seed: int, cases: int, data: Path = LA2018) -> list[str]:
    """The scans of seed ``seed``'s real study (see the module docstring)."""
    names = real_case_names(data)
    start = REAL_FIRST_STUDY_LINE + cases * seed
    if start + cases > len(names) - REAL_FORGETTING_CASES:
        raise SystemExit(f"seed {seed}: not enough LA 2018 scans for a study of {cases} "
                         f"(seeds 0-{(len(names) - REAL_FORGETTING_CASES - REAL_FIRST_STUDY_LINE) // cases - 1})")
    return names[start:start + cases]


def _real_study(folder: Path, names: list[str], data: Path = LA2018) -> Path:
    """A study of the real scans ``names`` (ground truth only, none accepted), imported once."""
    from napari_uamc.data.research_import import import_study

    def build(target: Path) -> None:
        listing = target.parent / f"{target.name}.list"
        common.write_text_atomically(listing, "\n".join(names) + "\n")
        import_study(data, target, labeled=0, case_list=listing)

    return common.built_once(folder, names, build)


def _real_data(cache_root: Path, setup: Setup, seed: int, synthetic_model: bool) -> dict[str, Path]:
    base = cache_root / BENCH / "data" / "la2018"
    if setup.studies == "held-out":  # the packaged model: its own validation scans, nothing else
        names, rest = held_out_split(seed, setup.cases)
        return {"B": _real_study(base / f"heldout{setup.cases}_seed{seed}", names),
                "A": _real_study(base / f"heldout-rest{setup.cases}_seed{seed}", rest), "replay": "auto"}
    names = real_study_cases(seed, setup.cases)
    data = {"B": _real_study(base / f"study{setup.cases}_seed{seed}", names)}
    if synthetic_model:  # a cold start's own domain: phantoms
        data["A"] = common.phantom_study(base / f"phantomA{setup.forgetting_cases}_seed{seed}",
                                         cases=setup.forgetting_cases, seed=A_TEST_SEED + seed,
                                         shape=setup.shape, labeled=0, domain="A")
        # the phantom model's own training data is not kept: phantoms of its domain, labeled
        data["replay"] = common.phantom_study(base / f"replayA{setup.replay_cases}_labeled_seed{seed}",
                                              cases=max(setup.replay_cases, 1), seed=REPLAY_SEED + seed,
                                              shape=setup.shape, labeled=setup.replay_cases, domain="A")
    else:  # a warm start: the engine's default, the starting model's training data if it is here
        data["A"] = _real_study(base / "forgetting", real_case_names()[-REAL_FORGETTING_CASES:])
        data["replay"] = "auto"
    return data


def _data(cache_root: Path, setup: Setup, seed: int, synthetic_model: bool = True) -> dict[str, Path]:
    if setup.real:
        return _real_data(cache_root, setup, seed, synthetic_model)
    shape = "x".join(map(str, setup.shape))
    base = cache_root / BENCH / "data" / shape
    return {
        "B": common.phantom_study(base / f"{setup.domain}{setup.cases}_seed{seed}", cases=setup.cases,
                                  seed=B_DATA_SEED + seed, shape=setup.shape, labeled=0,
                                  domain=setup.domain),
        "A": common.phantom_study(base / f"A{setup.forgetting_cases}_seed{seed}",
                                  cases=setup.forgetting_cases, seed=A_TEST_SEED + seed,
                                  shape=setup.shape, labeled=0, domain="A"),
        "replay": common.phantom_study(base / f"replayA{setup.replay_cases}_seed{seed}",
                                       cases=max(setup.replay_cases, 1), seed=REPLAY_SEED + seed,
                                       shape=setup.shape, labeled=0, domain="A"),
    }


def dice_scores(model, meta, study_dir: Path, cases: list[str], device: str) -> dict[str, float]:
    """Dice of the model's deterministic prediction against the ground truth of each case."""
    from napari_uamc.data.metrics import dice
    from napari_uamc.data.study import Study
    from napari_uamc.engine.inference import InferenceConfig, segment_volume

    study = Study.open(study_dir)
    config = InferenceConfig(mc_samples=0, device=device)
    scores = {}
    for name in cases:
        truth = study.read_ground_truth(name).array
        label = segment_volume(model, meta, study.read_image(name), config).label
        scores[name] = float(sum(dice(label == c, truth == c) for c in range(1, meta.n_classes))
                             / (meta.n_classes - 1))
    return scores


def mean_uncertainty(model, meta, study_dir: Path, mc_samples: int, device: str) -> dict[str, float]:
    """Each case's mean MC-dropout entropy (nats) over the whole volume: the order of correction.

    The whole volume, not the predicted foreground: a model that misses the structure on a new
    domain predicts no foreground, yet its uncertainty still says where it hesitates.
    """
    from napari_uamc.data.study import Study
    from napari_uamc.engine.inference import InferenceConfig, segment_volume

    study = Study.open(study_dir)
    config = InferenceConfig(mc_samples=mc_samples, device=device)
    return {name: segment_volume(model, meta, study.read_image(name), config).mean_uncertainty(False)
            for name in study.cases()}


def before(setup: Setup, model_path: Path, data: dict[str, Path]) -> dict[str, Any]:
    """The starting model's Dice on every B and A-test case, and its uncertainty on B."""
    from napari_uamc.data.study import Study
    from napari_uamc.engine.checkpoint import load_checkpoint

    model, meta = load_checkpoint(model_path, "cpu")
    b_cases, a_cases = Study.open(data["B"]).cases(), Study.open(data["A"]).cases()
    return {
        "dice_B": dice_scores(model, meta, data["B"], b_cases, setup.device),
        "dice_A": dice_scores(model, meta, data["A"], a_cases, setup.device),
        "uncertainty_B": mean_uncertainty(model, meta, data["B"], setup.mc_samples, setup.device),
    }


def correction_order(start: dict[str, Any], order: str, seed: int) -> list[str]:
    """B cases in the order a person corrects them: most uncertain first, or at random."""
    import numpy as np

    uncertainty = start["uncertainty_B"]
    names = sorted(uncertainty)
    if order == "uncertainty":
        return sorted(names, key=lambda n: (-uncertainty[n], n))
    rng = np.random.default_rng([ORDER_STREAM, seed])
    return [names[i] for i in rng.permutation(len(names))]


# ---------------------------------------------------------------------------------- one run
def run_one(setup: Setup, model_path: Path, data: dict[str, Path], start: dict[str, Any],
            variant: str, k: int, order: str, replay: bool, seed: int, workdir: Path) -> dict[str, Any]:
    """Copy the B study, accept k true labels (and the replay cases), fine-tune, score."""
    from napari_uamc.data.study import Study
    from napari_uamc.engine.checkpoint import load_checkpoint
    from napari_uamc.engine.finetune import finetune_study

    clock = common.Stopwatch()
    shutil.rmtree(workdir, ignore_errors=True)
    shutil.copytree(data["B"], workdir)
    study = Study.open(workdir)
    ranked = correction_order(start, order, seed)
    corrected = ranked[:k]
    for name in corrected:
        study.accept(name, study.read_ground_truth(name), note="benchmark: true label")
    if VARIANTS[variant].oracle:  # scored below as uncorrected all the same
        for name in ranked[k:]:
            study.accept(name, study.read_ground_truth(name), note="benchmark: oracle, the expert label")
    replayed: list[str] = []
    engine_replay: Any = None  # finetune_study's replay: none unless this run replays
    if k == 0:  # the null control: only cases the model trained on (or its domain's) are accepted
        replayed = _accept_known_cases(study, data["replay"], model_path, setup.replay_cases)
    elif replay and setup.real:  # the engine's replay (engine/replay.py), as `uamc finetune` and the panel do it
        engine_replay = data["replay"]
    elif replay:  # phantoms: earlier corrections, accepted into the study
        source = Study.open(data["replay"])
        replayed = source.cases()[: setup.replay_cases]
        study.add_images([source.image_path(name) for name in replayed])
        for name in replayed:
            study.accept(name, source.read_ground_truth(name), note="benchmark: replayed earlier case")
    load_start = common.load_average()
    result = finetune_study(
        study, model_path=model_path, minutes=setup.minutes, iterations=setup.iterations,
        device=setup.device, overrides={**VARIANTS[variant].overrides, "seed": seed}, score=False,
        replay=engine_replay,
    )
    info = json.loads(result.info_path.read_text())
    if engine_replay is not None:
        replayed = list(result.replay.get("cases", []))
    training_seconds = float(info.get("training_seconds", result.seconds))
    model, meta = load_checkpoint(result.path, "cpu")
    remaining = [name for name in ranked if name not in corrected]
    after_b = dice_scores(model, meta, workdir, remaining, setup.device)
    after_a = dice_scores(model, meta, data["A"], sorted(start["dice_A"]), setup.device)
    kept = workdir.parent.parent / "models" / f"{workdir.name}.pt"  # for a look at what it learned
    kept.parent.mkdir(exist_ok=True)
    shutil.copyfile(result.path, kept)
    shutil.rmtree(workdir, ignore_errors=True)
    return {
        "variant": variant, "k": k, "order": order, "replay": replayed, "seed": seed,
        "corrected": corrected, "overrides": VARIANTS[variant].overrides,
        "iterations": result.iterations, "stopped_early": result.stopped_early,
        "finetune_seconds": round(result.seconds, 1), "seconds": round(clock.seconds, 1),
        "training_seconds": round(training_seconds, 1),
        "seconds_per_iteration": round(training_seconds / max(result.iterations, 1), 3),
        # reading, resampling, the start-up of training, recalibration: the fine-tune outside its steps
        "seconds_outside_steps": round(result.seconds - training_seconds, 1),
        "learning_rate": info.get("settings", {}).get("finetune_lr"),
        "notes": info.get("notes", []),
        "precision": info.get("precision"),
        "load_average": [load_start, common.load_average()],
        "dice_before": {n: start["dice_B"][n] for n in remaining},
        "dice_after": after_b,
        "dice_A_before": start["dice_A"], "dice_A_after": after_a,
        "finished": common.utc_now(),
    }


def _accept_known_cases(study, source: Any, model_path: Path, count: int) -> list[str]:
    """Add ``count`` labeled cases of ``source`` (a folder, or ``"auto"``: the folder the starting
    model's record names, as the engine's replay finds it) to ``study`` and accept their labels."""
    from napari_uamc.data.study import Study
    from napari_uamc.engine.checkpoint import load_checkpoint
    from napari_uamc.engine.replay import replay_folder

    if source == "auto":
        _, meta = load_checkpoint(model_path, "cpu")
        source, why = replay_folder(meta.trained_on, "auto", study.root)
        if source is None:
            raise SystemExit(f"real-null needs the starting model's training data here: {why}")
    known = Study.open(source)
    names = sorted(known.labeled_cases())[:count]
    study.add_images([known.image_path(name) for name in names])
    for name in names:
        study.accept(name, known.read_label(name), note="benchmark: a case the model trained on")
    return names


def run_name(variant: str, k: int, order: str, replay: bool, seed: int) -> str:
    return f"{variant}_k{k}_{order}_{'replay' if replay else 'noreplay'}_seed{seed}"


def _ks_for(exp: Experiment, ks: list[int]) -> list[int]:
    """The k values of an experiment: its own fixed ones where asked, else the largest asked."""
    if exp.null:
        return [0]
    if exp.ks is None:
        return ks
    return [k for k in exp.ks if k in ks] or [max(ks)]


def plan(experiments: list[str], variants: list[str] | None, ks: list[int], seeds: list[int]):
    """(experiment, variant, k, order, replay, seed) of every run, seed-major, no duplicates."""
    seen = set()
    for seed in seeds:
        for name in experiments:
            exp = EXPERIMENTS[name]
            for k in _ks_for(exp, ks):
                for variant in exp.variants:
                    if variants is not None and variant not in variants:
                        continue
                    key = (variant, k, exp.order, exp.replay, seed)
                    if key not in seen:
                        seen.add(key)
                        yield (name, *key)


# --------------------------------------------------------------------------------- reporting
def _mean(values) -> float | None:
    return common.mean_sd(values)[0]


def _run_mean(result: dict[str, Any], key: str) -> float | None:
    return _mean(result[key].values())


def build_tables(found: dict[str, dict], runs: list[tuple], reference: str = BASELINE,
                 forgetting_set: str = "Domain A", show_pending: bool = True) -> tuple[str, list[str]]:
    sections = []
    for exp_name in EXPERIMENTS:
        keys = sorted({(v, k, o, r) for (e, v, k, o, r, s) in runs if e == exp_name},
                      key=lambda key: (key[1], list(VARIANTS).index(key[0])))
        rows = []
        for variant, k, order, replay in keys:
            results = [found[n] for n in (run_name(variant, k, order, replay, s)
                                          for (e, v, kk, o, r, s) in runs
                                          if (v, kk, o, r) == (variant, k, order, replay) and e == exp_name)
                       if n in found and "dice_after" in found[n]]
            if not results:
                if show_pending:
                    rows.append([VARIANTS[variant].label, k, order, "yes" if replay else "no", 0] + ["pending"] * 5)
                continue
            b0 = [_run_mean(r, "dice_before") for r in results]
            b1 = [_run_mean(r, "dice_after") for r in results]
            gains = [a - b for a, b in zip(b1, b0) if a is not None and b is not None]
            a0 = [_run_mean(r, "dice_A_before") for r in results]
            a1 = [_run_mean(r, "dice_A_after") for r in results]
            rows.append([
                VARIANTS[variant].label, k, order, "yes" if replay else "no", len(results),
                common.fmt_mean_sd(b0, 1, 3), common.fmt_mean_sd(b1, 1, 3),
                f"{common.fmt_mean_sd(gains, 1, 3)} ({common.fmt_range(b1, 1, 2)})",
                f"{common.fmt_mean_sd(a0, 1, 2)} -> {common.fmt_mean_sd(a1, 1, 2)}",
                f"{common.fmt_range([r['iterations'] for r in results], 1, 0)} "
                f"({common.fmt_range([r['seconds_per_iteration'] for r in results], 1, 2)} s/it"
                + (f"; {common.fmt_range([r['seconds_outside_steps'] for r in results], 1, 0)} s outside the steps"
                   if all("seconds_outside_steps" in r for r in results) else "") + ")",
            ])
        if rows:
            sections.append(f"**{exp_name}**\n\n" + common.markdown_table(
                ["fine-tune", "k", "order", "replay", "seeds", "Dice before", "Dice after",
                 "gain (range after)", "forgetting set before -> after", "iterations (s/it)"], rows))
    return "\n\n".join(sections), _findings(found, reference, forgetting_set)


def _paired(found: dict[str, dict], a: tuple, b: tuple, key: str = "dice_after",
            k: int | None = None) -> list[float]:
    """Differences of ``key`` (a Dice after) of run family a minus b, matched by k and seed.

    a and b are (variant, order, replay); each is matched over every (k, seed) both ran, or
    over the seeds at ``k`` only."""
    out = []
    for result in found.values():
        if "dice_after" not in result:
            continue
        if (result["variant"], result["order"], bool(result["replay"])) != a:
            continue
        if k is not None and result["k"] != k:
            continue
        other = found.get(run_name(b[0], result["k"], b[1], b[2], result["seed"]))
        if other and key in other:
            out.append(_run_mean(result, key) - _run_mean(other, key))
    return out


def _describe_diff(text: str, diffs: list[float]) -> str | None:
    if not diffs:
        return None
    wins = sum(d > 0 for d in diffs)
    return (f"- {text}: {_mean(diffs):+.3f} Dice on average over {len(diffs)} paired runs "
            f"(range {min(diffs):+.3f} to {max(diffs):+.3f}; better in {wins} of {len(diffs)}).")


def _findings(found: dict[str, dict], reference: str = BASELINE, forgetting_set: str = "Domain A") -> list[str]:
    """Paired comparisons against ``reference``, case-by-case changes, forgetting, failures."""
    lines = []
    done = {n: r for n, r in found.items() if "dice_after" in r}
    for text, a, b, key in (
        ("UG-MCL + EMA + BN minus supervised + EMA + BN (the baseline)",
         (SEMI, "uncertainty", False), (BASELINE, "uncertainty", False), "dice_after"),
        ("UG-MCL minus supervised (no EMA, no recalibration)",
         ("ugmcl", "uncertainty", False), ("sup", "uncertainty", False), "dice_after"),
        ("EMA + BN recalibration minus none, supervised",
         (BASELINE, "uncertainty", False), ("sup", "uncertainty", False), "dice_after"),
        ("Correcting the most uncertain cases first minus a random order (baseline fine-tune)",
         (BASELINE, "uncertainty", False), (BASELINE, "random", False), "dice_after"),
        ("Same, UG-MCL + EMA + BN", (SEMI, "uncertainty", False), (SEMI, "random", False), "dice_after"),
        ("Replay minus none, baseline, on the study's uncorrected cases",
         (BASELINE, "uncertainty", True), (BASELINE, "uncertainty", False), "dice_after"),
        ("Same, UG-MCL + EMA + BN, on the study's uncorrected cases",
         (SEMI, "uncertainty", True), (SEMI, "uncertainty", False), "dice_after"),
        ("Replay minus none, baseline, on the forgetting set",
         (BASELINE, "uncertainty", True), (BASELINE, "uncertainty", False), "dice_A_after"),
        ("EMA + BN recalibration minus none, supervised, on the forgetting set",
         (BASELINE, "uncertainty", False), ("sup", "uncertainty", False), "dice_A_after"),
    ):
        line = _describe_diff(text, _paired(done, a, b, key))
        if line:
            lines.append(line)
    # every variant against the baseline at k = 2 (every variant runs there), paired by seed: the
    # seeds' studies differ much in difficulty, so unpaired means would rank the seeds, not the
    # fine-tunes
    versus = {variant: diffs for variant in VARIANTS if variant != reference
              if (diffs := _paired(done, (variant, "uncertainty", False), (reference, "uncertainty", False),
                                   k=2))}
    if versus:
        ranked = sorted(versus, key=lambda v: -_mean(versus[v]))
        lines.append(f"- Each fine-tune minus {VARIANTS[reference].label} at k = 2, paired by seed (mean Dice "
                     "difference, better in, seeds): " + "; ".join(
                         f"{VARIANTS[v].label} {_mean(versus[v]):+.3f} ({sum(d > 0 for d in versus[v])} of "
                         f"{len(versus[v])})" for v in ranked) + ".")
        most = max(len(d) for d in versus.values())  # a best pick needs as many seeds as the others had
        better = [v for v in ranked if _mean(versus[v]) > 0 and len(versus[v]) == most]
        best = better[0] if better else reference
        lines.append("- Best on the uncorrected cases alone (forgetting not weighed): "
                     f"{VARIANTS[best].label}, overrides "
                     f"`{VARIANTS[best].overrides}`"
                     + ("" if better else " (no other fine-tune beat it on average)") + ".")
    for variant in VARIANTS:  # case by case: the loop must not trade one scan for another
        mine = [(name, r) for name, r in done.items() if r["variant"] == variant]
        for runs, what in (
            ({n: r for n, r in mine if r["k"] > 0 and not r["replay"]}, "uncorrected cases"),
            ({n: r for n, r in mine if r["k"] > 0 and r["replay"]}, "with replay, uncorrected cases"),
            ({n: r for n, r in mine if r["k"] == 0}, "the null control (k = 0), every study case"),
        ):
            per_case = [(r["dice_after"][n] - r["dice_before"][n], n, name) for name, r in runs.items()
                        for n in r["dice_after"] if n in r["dice_before"]]
            if not per_case:
                continue
            worst = min(per_case)
            lines.append(f"- {VARIANTS[variant].label}, {what} one by one: {len(per_case)} case "
                         f"scores over {len(runs)} runs; {sum(d > 0 for d, _, _ in per_case)} gained, "
                         f"{sum(d < -0.02 for d, _, _ in per_case)} lost more than 2 Dice points; the largest "
                         f"change down {worst[0]:+.3f} ({worst[1]} in {worst[2]}).")
    forget = [(_run_mean(r, "dice_A_before"), _run_mean(r, "dice_A_after"), bool(r["replay"]))
              for r in done.values()]
    plain = [(b, a) for b, a, rep in forget if not rep]
    replayed = [(b, a) for b, a, rep in forget if rep]
    if plain:
        lines.append(f"- {forgetting_set} (forgetting), runs without replay: {_mean(b for b, _ in plain):.3f} -> "
                     f"{_mean(a for _, a in plain):.3f}"
                     + (f"; with replay: {_mean(b for b, _ in replayed):.3f} -> {_mean(a for _, a in replayed):.3f}."
                        if replayed else "."))
    failed = [f"{name}: {r['error']}" for name, r in found.items() if "error" in r]
    if failed:
        lines.append("- Failed runs: " + "; ".join(failed))
    return lines or ["- No finished runs in the cache yet."]


def document(setup: Setup, preset: str, model_name: str, cache: common.ResultCache, runs: list[tuple],
             seeds: list[int], machine: dict[str, Any], command: str, show_pending: bool = True) -> str:
    found = cache.runs()
    if setup.real:  # against the fine-tune as it was before the cold- and warm-start rules
        forgetting_set = ("Phantoms (the model's own domain)" if setup.start == "cold" else
                          "The other held-out scans" if setup.studies else "Held-out real scans")
        tables, findings = build_tables(found, runs, "sup-ema-bn-nocold", forgetting_set, show_pending)
    else:
        tables, findings = build_tables(found, runs, show_pending=show_pending)
    measured = [r for r in found.values() if "dice_after" in r]
    compute = sum(r.get("seconds", 0.0) for r in found.values())
    loads = [v for r in measured for v in r.get("load_average", []) if v is not None]
    commands = sorted({r["command"] for r in found.values() if r.get("command")}) or [command]
    machines = {common.describe_machine(r["machine"]) for r in found.values() if r.get("machine")}
    budget = f"{setup.minutes:g} minutes" if setup.minutes is not None else f"{setup.iterations} iterations"
    if setup.real:
        start = setup.start
        budget_title = "" if setup.minutes == Setup.minutes else (
            f", {setup.minutes:g} minutes" if setup.minutes is not None else f", {setup.iterations} iterations")
        title = f"## Correct-and-retrain loop on real LA scans ({start} start{budget_title})"
        if setup.studies:
            title = f"## Correct-and-retrain loop on the packaged model's held-out real scans{budget_title}"
            study = (f"Study per seed s: {setup.cases} of the {HELD_OUT_CASES} scans of la2018-val16 (the "
                     f"last {HELD_OUT_CASES} of train.list, which the model never trained on), from the "
                     f"{HELD_OUT_SEED_STEP}s-th on, wrapping round; none accepted. Forgetting: Dice on the "
                     f"other {HELD_OUT_CASES - setup.cases} scans of la2018-val16. Seeds: "
                     f"{', '.join(map(str, seeds))}; s also seeds the fine-tune.")
        else:
            study = (f"Study per seed s: {setup.cases} real LA 2018 scans (train.list lines "
                     f"{REAL_FIRST_STUDY_LINE + 1}+{setup.cases}s to {REAL_FIRST_STUDY_LINE + setup.cases}+"
                     f"{setup.cases}s, 0.625 mm, cropped by the challenge's research code), none accepted. "
                     "Forgetting: Dice on the starting model's own domain ("
                     + (f"{setup.forgetting_cases} new domain-A phantoms, seed {A_TEST_SEED}+s"
                        if start == "cold" else f"the last {REAL_FORGETTING_CASES} scans of train.list")
                     + f"). Seeds: {', '.join(map(str, seeds))}; s also seeds the fine-tune.")
    else:
        title = "## Correct-and-retrain loop on a shifted domain"
        study = (f"Study per seed s: {setup.cases} "
                 f"domain-{setup.domain} phantoms {'x'.join(map(str, setup.shape))} (phantom seed {B_DATA_SEED}+s), "
                 f"none accepted. Forgetting: Dice on {setup.forgetting_cases} new domain-A phantoms (seed "
                 f"{A_TEST_SEED}+s). Replay: {setup.replay_cases} further domain-A phantoms (seed "
                 f"{REPLAY_SEED}+s) accepted into the study. Seeds: {', '.join(map(str, seeds))}; s also "
                 "seeds the fine-tune and the random order.")
    lines = [
        title,
        "",
        f"Written by `benchmarks/bench_loop.py` ({preset} configuration, cache key `{cache.key}`), "
        f"{common.utc_now()}.",
        "",
        f"- Measured by: {', '.join(f'`{c}`' for c in commands)}. Written by: `{command}`.",
        f"- Machine: {'; '.join(sorted(machines)) or common.describe_machine(machine)}. Load average "
        f"during the fine-tunes: {common.fmt_range(loads, 1, 1)} (other jobs shared the CPU; a time "
        "budget buys fewer iterations on a busy machine).",
        f"- Starting model: {model_name} (sha256 {setup.model_sha}). {study}",
        "- Each run: copy the study; accept the ground truth of the first k cases in the order of "
        "correction (most uncertain first by the starting model's mean MC-dropout entropy over the "
        f"volume, T = {setup.mc_samples}; or a random order); `finetune_study` with a budget of "
        f"{budget} on {setup.device}, the engine's fine-tune settings plus the variant's overrides; "
        "then the deterministic prediction on the cases nobody corrected. \"Dice before\" is the "
        "starting model on the same cases.",
        f"- Compute time of the cached runs: {common.fmt_seconds(compute)}.",
        "",
        tables,
        "",
        "Findings (computed from the numbers above; a run's Dice is the mean over its uncorrected "
        "cases):",
        "",
        *findings,
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- command
def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny phantoms, 2 iterations, 1 seed (seconds)")
    parser.add_argument("--model", type=Path, help="starting model (default: the packaged default model)")
    parser.add_argument("--experiments",
                        help=f"comma-separated, from {','.join(EXPERIMENTS)} (default: all but real; "
                             "with --real: real)")
    parser.add_argument("--variants", help=f"only these fine-tunes, from {','.join(VARIANTS)}")
    parser.add_argument("--k", help="corrected cases, comma-separated (default 1,2,4)")
    parser.add_argument("--seeds", help="comma-separated seeds (default 0,1)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="fine-tune budget in minutes (default 3)")
    budget.add_argument("--iterations", type=int, help="fine-tune budget in iterations instead")
    parser.add_argument("--cases", type=int, help="cases in the shifted study (default 10)")
    parser.add_argument("--domain", default="B", help="the shifted phantom domain (default B)")
    parser.add_argument("--real", action="store_true",
                        help="studies of real LA 2018 scans from ../shared/data/la2018 instead of phantoms "
                             "(experiments real, methods and order)")
    parser.add_argument("--studies", choices=("train", "held-out"), default="train",
                        help="--real: studies from train.list lines 17 on (default), or from la2018-val16, the "
                             "packaged model's held-out scans (start from that model: what a user gets)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    parser.add_argument("--threads", type=int,
                        help="torch CPU threads (default: torch's; use 1 on a busy machine)")
    parser.add_argument("--cache-dir", type=Path, default=common.DEFAULT_CACHE_DIR)
    parser.add_argument("--cached", action="store_true", help="run nothing; report what the cache holds")
    parser.add_argument("--write", nargs="?", const=common.DEFAULT_DOC, type=Path, metavar="DOC",
                        help=f"write the section into DOC (default {common.DEFAULT_DOC.relative_to(common.REPO_ROOT)})")
    return parser.parse_args(argv)


def _int_list(text: str | None, default: tuple[int, ...], what: str) -> list[int]:
    if not text:
        return list(default)
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"{what} must be comma-separated integers, not {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise SystemExit(f"{what} must be non-negative integers, not {text!r}")
    return values


def _names(text: str | None, known: dict, what: str) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise SystemExit(f"unknown {what} {unknown or text!r}; choose from {','.join(known)}")
    return names


def _smoke_model(cache_root: Path, shape: tuple[int, int, int]) -> Path:
    """A tiny model trained for one step on a domain-A phantom (smoke runs only)."""
    from napari_uamc.engine.config import TrainConfig
    from napari_uamc.engine.dataset import load_cases_from_folder
    from napari_uamc.engine.training import Trainer

    path = cache_root / BENCH / "smoke-model.pt"
    if path.exists():
        return path
    data = common.phantom_study(cache_root / BENCH / "data" / "smoke-train", cases=1, seed=0, shape=shape)
    split = load_cases_from_folder(data)
    cfg = TrainConfig(width=2, patch=(32, 32, 16), iterations=1, terms=["seg", "dis"], mc_samples=2)
    trainer = Trainer(cfg, split.labeled, device="cpu")
    for _ in trainer.steps():
        pass
    trainer.export(path, spacing=split.spacing, trained_on="smoke", synthetic_only=True)
    return path


def _latest_cached_setup(cache_root: Path, setup: Setup) -> Setup:
    """For ``--cached``: the setup itself if its cache holds runs, else the most recent cached
    setup that differs only in the starting model (the packaged model may have been replaced
    since the runs were measured)."""
    own = cache_root / BENCH / common.config_key(setup.to_dict())
    if any(p.name != "config.json" for p in own.glob("*.json")):
        return setup
    wanted = {k: v for k, v in json.loads(json.dumps(setup.to_dict())).items() if k != "model_sha"}
    candidates = []
    for config_path in (cache_root / BENCH).glob("*/config.json"):
        try:
            config = json.loads(config_path.read_text())
        except (OSError, ValueError):
            continue
        runs = [p for p in config_path.parent.glob("*.json") if p.name != "config.json"]
        if runs and {k: v for k, v in config.items() if k != "model_sha"} == wanted:
            candidates.append((max(p.stat().st_mtime for p in runs), config["model_sha"]))
    if not candidates:
        return setup
    sha = max(candidates)[1]
    print(f"note: no runs cached for the current model; reporting the latest runs (model sha256 {sha})")
    return dataclasses.replace(setup, model_sha=sha)


def _setup_values(args: argparse.Namespace, ks: list[int]) -> dict[str, Any]:
    """Setup fields other than the model, from the preset and the command line."""
    values = dict(SMOKE) if args.smoke else {}
    if args.cases is not None:
        values["cases"] = args.cases
    if args.minutes is not None:
        values.update(minutes=args.minutes, iterations=None)
    if args.iterations is not None:
        values.update(iterations=args.iterations, minutes=None)
    cases = values.get("cases", Setup.cases)
    if max(ks) >= cases:
        raise SystemExit(f"--k {max(ks)} leaves no uncorrected case in a study of {cases}")
    values.update(device=args.device, domain=args.domain.upper())
    if args.real:
        if args.smoke:
            raise SystemExit("--real and --smoke do not go together (the smoke run is on phantoms)")
        values["data"] = "la2018"
        if args.studies == "held-out":
            values["studies"] = "held-out"
    elif args.studies != "train":
        raise SystemExit("--studies applies to --real")
    return values


#: The width-8 model trained on domain-A phantoms only (the packaged default before the real-scan model).
PHANTOM_MODEL = Path(__file__).resolve().parent / "models" / "phantom-f8.pt"


def _starting_model(args: argparse.Namespace, shape: tuple[int, int, int]) -> tuple[Path, str]:
    """(model file, how to name it in the report)."""
    if args.model is not None:
        if not args.model.is_file():
            raise SystemExit(f"--model {args.model} is not a file")
        from napari_uamc.engine.checkpoint import load_checkpoint

        trained_on = load_checkpoint(args.model, "cpu")[1].trained_on
        return args.model, args.model.name + (f" ({trained_on})" if trained_on else "")
    if args.smoke:
        return _smoke_model(args.cache_dir, shape), "a one-step smoke model"
    # the loop on phantoms starts from the phantom-trained model (the packaged default until it
    # was replaced by the model trained on real LA scans); same file, kept here
    return PHANTOM_MODEL, f"{PHANTOM_MODEL.name}, the phantom-trained model (domain A)"


def _snapshot(cache: common.ResultCache, model_path: Path, name: str, copy: bool) -> tuple[Path, str]:
    """The cache's own copy of the starting model (every run starts from it, so a model file
    replaced meanwhile cannot mix into the runs) and its name."""
    snapshot, described = cache.folder / "start-model.pt", cache.folder / "start-model.txt"
    if copy and not snapshot.exists():
        partial = cache.folder / ".start-model.pt.tmp"
        shutil.copyfile(model_path, partial)
        partial.replace(snapshot)
        common.write_text_atomically(described, f"{name}\n")
    try:
        return snapshot, described.read_text().strip()
    except OSError:
        return snapshot, name


def _synthetic_only(model_path: Path) -> bool:
    """Whether the model trained on phantoms only (a cold start on real scans)."""
    from napari_uamc.engine.checkpoint import load_checkpoint

    return bool(load_checkpoint(model_path, "cpu")[1].synthetic_only)


def _run_seed(setup: Setup, cache: common.ResultCache, cache_root: Path, model_path: Path,
              seed_runs: list[tuple], seed: int, extra: dict[str, Any]) -> bool:
    """Run the missing runs of one seed; False when interrupted."""
    if all((cache.get(run_name(*r[1:])) or {}).get("dice_after") for r in seed_runs):
        return True
    data = _data(cache_root, setup, seed, setup.start == "cold")
    start = cache.get(f"before_seed{seed}")
    if start is None:
        print(f"  seed {seed}: scoring the starting model", flush=True)
        start = before(setup, model_path, data)
        cache.put(f"before_seed{seed}", start)
    for exp_name, variant, k, order, replay, _ in seed_runs:
        name = run_name(variant, k, order, replay, seed)
        if (cache.get(name) or {}).get("dice_after"):
            continue
        print(f"  {name} ({exp_name}): fine-tuning", flush=True)
        try:
            result = run_one(setup, model_path, data, start, variant, k, order, replay, seed,
                             cache.folder / "work" / name)
        except KeyboardInterrupt:
            print("interrupted; finished runs are cached", flush=True)
            return False
        except Exception as error:  # recorded so that the report says what failed
            traceback.print_exc()
            cache.put(name, {"variant": variant, "k": k, "order": order, "replay": replay, "seed": seed,
                             "error": f"{type(error).__name__}: {error}", "finished": common.utc_now()})
            continue
        result.update(extra, experiment=exp_name)
        cache.put(name, result)
        print(f"  {name}: Dice {_run_mean(result, 'dice_before'):.3f} -> "
              f"{_run_mean(result, 'dice_after'):.3f} (domain A {_run_mean(result, 'dice_A_before'):.3f}"
              f" -> {_run_mean(result, 'dice_A_after'):.3f}), {result['iterations']} its, "
              f"{result['seconds'] / 60:.1f} min", flush=True)
    return True


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    preset = "smoke" if args.smoke else "default"
    common.set_threads(args.threads if args.threads is not None else (1 if args.smoke else None))
    experiments = _names(args.experiments, EXPERIMENTS, "experiment") or []
    variants = _names(args.variants, VARIANTS, "variant")
    if variants is None and args.smoke:
        variants = list(SMOKE_VARIANTS)
    if args.real:
        experiments = ["real"] if args.experiments is None else experiments
        if variants is None:
            variants = list(REAL_VARIANTS)
        if "replay" in experiments:
            raise SystemExit("--real replays real or phantom cases with the experiment real-replay, not replay")
    elif args.experiments is None:
        experiments = [e for e in EXPERIMENTS if not e.startswith("real") and e != "pick"]
    ks = _int_list(args.k, SMOKE_KS if args.smoke else DEFAULT_KS, "--k")
    seeds = _int_list(args.seeds, SMOKE_SEEDS if args.smoke else DEFAULT_SEEDS, "--seeds")
    values = _setup_values(args, ks)
    model_path, model_name = _starting_model(args, values.get("shape", Setup.shape))
    if args.real:
        values["start"] = "cold" if _synthetic_only(model_path) else "warm"
    setup = Setup(model_sha=file_sha(model_path), **values)
    if args.cached:
        setup = _latest_cached_setup(args.cache_dir, setup)
    cache = common.ResultCache(args.cache_dir, BENCH, setup.to_dict())
    model_path, model_name = _snapshot(cache, model_path, model_name, copy=not args.cached)
    machine = common.machine_info(setup.device)
    command = common.command_line([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    runs = list(plan(experiments, variants, ks, seeds))
    if not runs:
        raise SystemExit(f"no run planned: the experiments {','.join(experiments)} hold none of the variants "
                         f"{','.join(variants or [])}")
    clock = common.Stopwatch()
    print(f"loop ({preset}): {len(runs)} runs; cache {cache.folder}", flush=True)
    if not args.cached:
        for seed in seeds:
            seed_runs = [r for r in runs if r[-1] == seed]
            if not _run_seed(setup, cache, args.cache_dir, model_path, seed_runs, seed,
                             {"machine": machine, "command": command}):
                return 130
    text = document(setup, preset, model_name, cache, runs, seeds, machine, command, show_pending=not args.cached)
    print(text)
    print(f"(this invocation: {common.fmt_seconds(clock.seconds)})")
    if args.write:
        section = BENCH if preset == "default" else f"{BENCH}-{preset}"
        if setup.real:  # one section per start and budget
            section = f"{BENCH}-la2018-{setup.start}" + ("-heldout" if setup.studies else "")
            if (setup.minutes, setup.iterations) != (Setup.minutes, Setup.iterations):
                section += f"-{setup.minutes:g}min" if setup.minutes is not None else f"-{setup.iterations}its"
        path = common.write_section(args.write, section, text)
        print(f"wrote section {section!r} of {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
