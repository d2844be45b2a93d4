"""`lr_schedule`: set the optimizer's learning rate before every step from a schedule."""

import math
from typing import ClassVar

import attrs
from attrs.validators import ge, gt, in_, instance_of, le, optional

from framework import Callback, ConfigError, did_you_mean, hookimpl

SCHEDULES = ("cosine", "step", "exponential", "one_cycle")
number = instance_of((int, float))


def anneal_cos(start, end, fraction):
    """From ``start`` at ``fraction`` 0 to ``end`` at 1 along half a cosine."""
    return end + (start - end) / 2 * (1 + math.cos(math.pi * fraction))


def reject_bool(instance, attribute, value):
    # TOML's true is an int to Python: refuse it rather than read it as 1
    if isinstance(value, bool):
        raise ValueError(f"{attribute.name} must be a number, got {value!r}")


non_negative_int = [reject_bool, instance_of(int), ge(0)]
positive_int = [reject_bool, instance_of(int), gt(0)]


@attrs.define(eq=False)
class LRSchedule(Callback):
    """Sets ``optimizer.lr`` before each step to the schedule's value at the trainer's
    position: its global step (``unit = "step"``, the default) or its epoch
    (``unit = "epoch"``: the rate changes between epochs only).  The rate is a function of
    that position alone, so a run resumed from a checkpoint follows the schedule exactly as
    an uninterrupted one does.

    With ``lr`` the peak rate η (default: the optimizer's own ``lr``), ``t`` the position,
    ``T`` the ``total`` length (default: the epochs of the current ``fit``, in steps or
    epochs; in a run by ``steps``, those steps), ``W`` the ``warmup`` length and ``s = t − W`` the position after it:

    * warm-up (``cosine``, ``step``, ``exponential``), ``t < W``: η · (t + 1) / (W + 1),
      a straight line up to η (no step at rate 0);
    * ``cosine``: min_lr + (η − min_lr) · (1 + cos(π · s / (T − W))) / 2 — PyTorch's
      ``CosineAnnealingLR`` with ``T_max = T − W``;
    * ``step``: η · gamma^⌊s / step_size⌋ (``StepLR``; ``gamma`` defaults to 0.1);
    * ``exponential``: η · gamma^s (``ExponentialLR``; ``gamma`` must be given);
    * ``one_cycle``: PyTorch's ``OneCycleLR`` (cosine annealing, learning rate only): from
      η / div_factor up to η over the first ``pct_start`` of T, then down to
      η / (div_factor · final_div_factor) at the last step.

    Past ``T`` the cosine and one-cycle rates stay at their last value.  The rate in use is
    added to every step's and epoch's logs as ``lr`` (so TensorBoard's ``lr`` scalar,
    ``csv_logger`` and the progress line show it).
    """

    kind: ClassVar[str] = "lr_schedule"

    schedule: str = attrs.field(default="cosine", validator=instance_of(str))
    lr: float | None = attrs.field(default=None, validator=optional([reject_bool, number, gt(0)]))
    unit: str = attrs.field(default="step", validator=in_(("step", "epoch")))
    total: int | None = attrs.field(default=None, validator=optional(positive_int))
    warmup: int = attrs.field(default=0, validator=non_negative_int)
    min_lr: float = attrs.field(default=0.0, validator=[reject_bool, number, ge(0)])
    step_size: int | None = attrs.field(default=None, validator=optional(positive_int))
    gamma: float | None = attrs.field(
        default=None, validator=optional([reject_bool, number, gt(0)])
    )
    pct_start: float = attrs.field(default=0.3, validator=[reject_bool, number, gt(0), le(1)])
    div_factor: float = attrs.field(default=25.0, validator=[reject_bool, number, gt(0)])
    final_div_factor: float = attrs.field(default=1e4, validator=[reject_bool, number, gt(0)])

    peak: float | None = attrs.field(init=False, default=None, repr=False)
    length: int | None = attrs.field(init=False, default=None, repr=False)

    @schedule.validator
    def _known(self, attribute, value):
        if value not in SCHEDULES:
            raise ValueError(
                f"unknown schedule '{value}'{did_you_mean(value, SCHEDULES)} Schedules: {', '.join(SCHEDULES)}"
            )

    def __attrs_post_init__(self):
        if self.schedule == "step" and self.step_size is None:
            raise ValueError(
                "schedule 'step' needs step_size (steps or epochs between decays, as unit says)"
            )
        if self.schedule == "exponential" and self.gamma is None:
            raise ValueError(
                "schedule 'exponential' needs gamma, the factor per step or epoch (e.g. 0.999)"
            )
        if self.schedule == "one_cycle" and self.warmup:
            raise ValueError("schedule 'one_cycle' rises on its own (pct_start); drop warmup")
        if self.schedule in ("cosine", "one_cycle") and self.gamma is not None:
            raise ValueError(f"schedule '{self.schedule}' takes no gamma")

    def rate(self, t):
        """The learning rate at position ``t`` (step or epoch, from 0); needs `peak` and `length`."""
        peak, total, warmup = self.peak, self.length, self.warmup
        if self.schedule == "one_cycle":
            initial = peak / self.div_factor
            final = initial / self.final_div_factor
            rise_end = self.pct_start * total - 1  # PyTorch's phase boundaries, in steps
            last = total - 1
            if t <= rise_end:
                return anneal_cos(initial, peak, t / rise_end if rise_end > 0 else 1.0)
            span = last - rise_end
            return anneal_cos(peak, final, min((t - rise_end) / span, 1.0) if span > 0 else 1.0)
        if t < warmup:
            return peak * (t + 1) / (warmup + 1)
        s = t - warmup
        if self.schedule == "cosine":
            return anneal_cos(peak, self.min_lr, min(s / (total - warmup), 1.0))
        if self.schedule == "step":
            return peak * (0.1 if self.gamma is None else self.gamma) ** (s // self.step_size)
        return peak * self.gamma**s

    def position(self, trainer):
        return trainer.step if self.unit == "step" else trainer.epoch

    @hookimpl
    def on_train_begin(self, trainer):
        optimizer = trainer.optimizer
        if getattr(optimizer, "full_batch", False) or not isinstance(
            getattr(optimizer, "lr", None), (int, float)
        ):
            raise ConfigError(
                f"lr_schedule needs a step optimizer with an lr (sgd, adam, ...); "
                f"{type(optimizer).__name__} has none"
            )
        if self.peak is None:  # once: a later fit must not start from a scheduled value
            self.peak = float(self.lr if self.lr is not None else optimizer.lr)
        length = self.total
        max_steps = getattr(trainer, "max_steps", None)
        if length is None and max_steps is not None:  # a run by steps: to its last step
            if self.unit == "step":
                length = max_steps
            else:
                length = math.ceil(max_steps / trainer.steps_per_epoch)
        if length is None:
            length = trainer.epochs * (trainer.steps_per_epoch if self.unit == "step" else 1)
        if self.schedule in ("cosine", "one_cycle") and length <= self.warmup:
            raise ConfigError(
                f"lr_schedule: warmup ({self.warmup}) must be shorter than the schedule "
                f"({length} {self.unit}s)"
            )
        self.length = length
        optimizer.lr = self.rate(self.position(trainer))

    @hookimpl
    def on_batch_begin(self, trainer):
        trainer.optimizer.lr = self.rate(self.position(trainer))

    @hookimpl(tryfirst=True)  # before the callbacks that log what they are given
    def on_batch_end(self, trainer, logs):
        logs["lr"] = trainer.optimizer.lr

    @hookimpl(tryfirst=True)
    def on_epoch_end(self, trainer, logs):
        logs["lr"] = trainer.optimizer.lr
