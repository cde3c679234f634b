"""How the fine-tune names its stages in its messages, for a process that watches them, and
what a finished version is flagged for (the panel's offer and ``uamc finetune`` alike).

The panel runs the fine-tune in a child process and reads its messages (``_napari/tasks.py``,
``_napari/finetune_progress.py``): it names the running stage by these beginnings and lets a
version's write end after a Stop once the writing began. No torch: the panel imports this module
without the engine.
"""

from __future__ import annotations

from collections.abc import Mapping

#: The fine-tune starts writing a model version's files ("writing model v003").
WRITING_MESSAGE = "writing model "
#: It wrote them ("wrote model v003 (PATH); ...").
WROTE_MESSAGE = "wrote model "
#: It starts its training steps ("training for 60 iterations").
TRAINING_MESSAGE = "training for "
#: It reads the replay cases ("reading the replay cases of FOLDER (WHY)").
READING_REPLAY_MESSAGE = "reading the replay cases of "
#: It computes the teacher's whole-case targets before the first step ("computing the teacher's
#: targets of 6 other cases").
TARGETS_MESSAGE = "computing the teacher's targets of "
#: How the fine-tune's sentence on what taught a version begins (the first of the version's notes,
#: ``finetune_start.method_sentence``): a warm start that learns from the other cases, a cold one.
METHOD_PREFIXES = ("the model knows these images", "the model is new to these images")
#: A version made in fewer iterations than this is flagged as barely trained (the panel's offer,
#: ``uamc finetune``).
FEW_ITERATIONS = 20
#: A version is flagged (and the offer makes Discard its default) when its mean Dice with the
#: accepted labels is lower than its parent's by more than this: it trained on them and still
#: agrees less.
WORSE_BY = 0.005


def barely_trained(iterations: int) -> bool:
    """Fewer than :data:`FEW_ITERATIONS` iterations, stopped or not (a 1-minute budget made 7-11
    on real scans in a try-out)."""
    return iterations < FEW_ITERATIONS


def scored_means(before: Mapping[str, float], after: Mapping[str, float]) -> tuple[float, float] | None:
    """Mean Dice with the accepted labels before and after, on the cases both were scored on
    (None: no such case)."""
    both = set(before) & set(after)
    if not both:
        return None
    return (sum(before[c] for c in both) / len(both), sum(after[c] for c in both) / len(both))


def agrees_less(before: Mapping[str, float], after: Mapping[str, float]) -> bool:
    """The version agrees less with the accepted labels than its parent (by more than
    :data:`WORSE_BY` in mean Dice, on the cases both were scored on), though it trained on them."""
    means = scored_means(before, after)
    return means is not None and means[1] < means[0] - WORSE_BY
