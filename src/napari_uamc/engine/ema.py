"""Mean-teacher exponential moving average of the student's parameters (METHOD.md section 3)."""

from __future__ import annotations

import torch
from torch import nn

#: The paper's maximum decay.
DEFAULT_ALPHA_MAX = 0.99


def ema_decay(step: int, alpha_max: float = DEFAULT_ALPHA_MAX) -> float:
    """``alpha = min(1 - 1/(step + 1), alpha_max)``: 0 at step 0 (the teacher becomes a copy)."""
    if step < 0:
        raise ValueError(f"EMA step must be >= 0, not {step}")
    return min(1.0 - 1.0 / (step + 1), alpha_max)


@torch.no_grad()
def update_ema(
    teacher: nn.Module, student: nn.Module, step: int, alpha_max: float = DEFAULT_ALPHA_MAX
) -> float:
    """``teacher <- alpha * teacher + (1 - alpha) * student`` on parameters only; returns alpha.

    Buffers (BatchNorm statistics) are left untouched: the teacher runs in train mode.
    """
    teacher_params = list(teacher.parameters())
    student_params = list(student.parameters())
    if len(teacher_params) != len(student_params) or any(
        t.shape != s.shape for t, s in zip(teacher_params, student_params)
    ):
        raise ValueError("update_ema: teacher and student must have the same architecture")
    alpha = ema_decay(step, alpha_max)
    # lerp(t, s, w) = t + w (s - t) = (1 - w) t + w s, with w = 1 - alpha; w = 1 copies exactly.
    torch._foreach_lerp_(teacher_params, student_params, 1.0 - alpha)
    return alpha
