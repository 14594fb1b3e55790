"""Pure schedules: optimizer step -> learning-rate multiplier in [0, 1].

Nothing here imports torch. A step is one optimizer update (after gradient accumulation), counted from 0,
with the same meaning as the `current_step` that `torch.optim.lr_scheduler.LambdaLR` passes to its lambda.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

Schedule = Callable[[int], float]


def check_steps(num_training_steps: int, num_warmup_steps: int) -> None:
    """Raise a `ValueError` unless 0 <= num_warmup_steps < num_training_steps, both integers."""
    if int(num_training_steps) != num_training_steps or num_training_steps <= 0:
        raise ValueError(f"num_training_steps must be a positive integer, got {num_training_steps=}")
    if int(num_warmup_steps) != num_warmup_steps or not 0 <= num_warmup_steps < num_training_steps:
        raise ValueError(
            f"num_warmup_steps must be an integer in [0, num_training_steps), got {num_warmup_steps=} "
            f"with {num_training_steps=}"
        )


def linear_decay(
    step: int, *, num_training_steps: int, num_warmup_steps: int = 0, min_lr_ratio: float = 0.0
) -> float:
    """Linear warmup to 1, then linear decay to `min_lr_ratio` at `num_training_steps`; held there after.

    ```
    m(t) = t / W                            for t < W
    m(t) = r + (1 - r) * (T - t) / (T - W)  for t >= W
    ```

    With `min_lr_ratio=0` this is exactly transformers' `linear` schedule (`get_linear_schedule_with_warmup`).

    Examples:
        >>> [linear_decay(t, num_training_steps=4) for t in range(6)]
        [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]

    References:
        Defazio et al., "Optimal Linear Decay Learning Rate Schedules and Further Refinements", arXiv 2310.07831.
    """
    if step < num_warmup_steps:
        return float(step) / float(max(1, num_warmup_steps))
    remaining = max(0.0, float(num_training_steps - step) / float(max(1, num_training_steps - num_warmup_steps)))
    return min_lr_ratio + (1.0 - min_lr_ratio) * remaining


def cosine_decay(step: int, *, num_training_steps: int, num_warmup_steps: int = 0) -> float:
    """transformers' `cosine` schedule (half a cosine after a linear warmup), for plots and comparisons."""
    if step < num_warmup_steps:
        return float(step) / float(max(1, num_warmup_steps))
    progress = min(1.0, float(step - num_warmup_steps) / float(max(1, num_training_steps - num_warmup_steps)))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def table_schedule(
    step: int,
    *,
    table: Sequence[float],
    num_training_steps: int,
    num_warmup_steps: int = 0,
    min_lr_ratio: float = 0.0,
) -> float:
    """A multiplier table joined after a linear warmup.

    `table[k]` is the multiplier at fraction `k / (len(table) - 1)` of the decay phase (steps
    `num_warmup_steps .. num_training_steps`); its last entry is the value at the end of training. Between entries
    the table is interpolated linearly, so a table built for another run length still applies (by training
    fraction); when `len(table) == num_training_steps - num_warmup_steps + 1` every step reads one entry exactly.
    Warmup ramps linearly from 0 to `table[0]`, so a table of linear decay gives transformers' `linear` schedule
    with warmup. Past the end the last entry is held. `min_lr_ratio` lifts the decay phase to
    `min_lr_ratio + (1 - min_lr_ratio) * table`.
    """
    if step < num_warmup_steps:
        return float(step) / float(max(1, num_warmup_steps)) * (min_lr_ratio + (1.0 - min_lr_ratio) * table[0])
    decay_steps = num_training_steps - num_warmup_steps
    last = len(table) - 1
    # Integer arithmetic first so that a table of matching length is read exactly, with no rounding.
    numerator = min(step - num_warmup_steps, decay_steps) * last
    index, remainder = divmod(numerator, decay_steps)
    value = table[index]
    if remainder:
        frac = remainder / decay_steps
        value = value + (table[index + 1] - value) * frac
    return min_lr_ratio + (1.0 - min_lr_ratio) * value


def linear_table(num_steps: int) -> list[float]:
    """The table `1 - k / num_steps` for k = 0 .. num_steps (what constant gradient norms refine to)."""
    return [float(num_steps - k) / num_steps for k in range(num_steps + 1)]


def constant(step: int, *, num_warmup_steps: int = 0) -> float:
    """transformers' `constant_with_warmup` (`constant` when `num_warmup_steps=0`): a linear warmup, then 1.

    Examples:
        >>> [constant(t, num_warmup_steps=2) for t in range(4)]
        [0.0, 0.5, 1.0, 1.0]
    """
    if step < num_warmup_steps:
        return float(step) / float(max(1, num_warmup_steps))
    return 1.0


def warmup_stable_decay(
    step: int,
    *,
    num_training_steps: int,
    num_decay_steps: int,
    num_warmup_steps: int = 0,
    decay_type: str = "cosine",
    min_lr_ratio: float = 0.0,
) -> float:
    """transformers' `warmup_stable_decay` with a linear warmup: warmup, hold 1, then decay over the last
    `num_decay_steps` steps (`decay_type` "linear", "cosine" (transformers' default) or "1-sqrt").

    Examples:
        >>> [warmup_stable_decay(t, num_training_steps=5, num_decay_steps=2, decay_type="linear") for t in range(6)]
        [1.0, 1.0, 1.0, 1.0, 0.5, 0.0]
    """
    if decay_type not in ("linear", "cosine", "1-sqrt"):
        raise ValueError(f"decay_type must be 'linear', 'cosine' or '1-sqrt', got {decay_type!r}")
    if step < num_warmup_steps:
        return min_lr_ratio + (1.0 - min_lr_ratio) * float(step) / float(max(1, num_warmup_steps))
    decay_start = num_training_steps - num_decay_steps
    if step < decay_start:
        return 1.0
    if step >= num_training_steps:
        return min_lr_ratio
    progress = float(step - decay_start) / float(max(1, num_decay_steps))
    if decay_type == "linear":
        factor = 1.0 - progress
    elif decay_type == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        factor = 1.0 - math.sqrt(progress)
    return min_lr_ratio + (1.0 - min_lr_ratio) * factor
