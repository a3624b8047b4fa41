r"""The stopping rule: end a run early on a monitored metric.

A run stops after the evaluation at which the monitored metric (the
benchmark's metric on the split ``train.stop_monitor`` names) reaches
``train.stop_target``, or after ``train.stop_patience`` evaluations in a row
without a gain over its best so far; ``None`` disables either part. This is
Alon & Yahav's Tree-NeighborsMatch protocol (stop at train accuracy 1.0 or
after 20 logged epochs without gain) stated for any metric.

The rule's state is a pure function of the monitored values logged so far,
so a resumed run rebuilds it by replaying its history (:meth:`StopRule.replay`)
and reaches exactly the state an uninterrupted run holds; checkpoints written
before the rule existed resume the same way.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterable, Mapping, Optional

from .loop import is_better

# Why a run ended; "epochs" is the plain budget (train.epochs) running out.
TARGET, PATIENCE, EPOCHS = "target", "patience", "epochs"


@dataclass
class StopRule:
    """The rule's settings and its state after the evaluations seen so far."""

    target: Optional[float]
    patience: Optional[int]
    higher_is_better: bool
    best: Optional[float] = None
    best_epoch: Optional[int] = None
    without_gain: int = 0          # evaluations since the last gain
    reason: Optional[str] = None   # TARGET or PATIENCE once the rule fired
    epoch: Optional[int] = None    # the epoch after which it fired

    def update(self, epoch: int, value: Optional[float]) -> bool:
        """Takes the monitored value of an evaluated ``epoch``; returns whether
        the run should stop after it. A NaN or missing value is no gain."""
        if self.reason is not None:
            return True
        if is_better(value, self.best, self.higher_is_better):
            self.best, self.best_epoch, self.without_gain = value, epoch, 0
        else:
            self.without_gain += 1
        if self.target is not None and self.best is not None and reached(
                self.best, self.target, self.higher_is_better):
            self.reason, self.epoch = TARGET, epoch
        elif self.patience is not None and self.without_gain >= self.patience:
            self.reason, self.epoch = PATIENCE, epoch
        return self.reason is not None

    def replay(self, history: Iterable[Mapping[str, Any]], key: str) -> "StopRule":
        """Feeds the ``key`` column of every evaluated row of ``history``
        (rows without it were not evaluated); returns ``self``."""
        for row in history:
            if key in row:
                self.update(int(row["epoch"]), row[key])
        return self

    @property
    def stopped(self) -> bool:
        return self.reason is not None

    def record(self, monitor: str) -> Dict[str, Any]:
        """The rule's state as ``metrics.json`` reports it."""
        return {"monitor": monitor, **asdict(self)}


def reached(value: float, target: float, higher_is_better: bool) -> bool:
    """Whether ``value`` is at or past ``target`` in the metric's direction."""
    return value >= target if higher_is_better else value <= target


def stop_rule(train_cfg: Mapping[str, Any], higher_is_better: bool) -> StopRule:
    """A fresh rule from the ``train`` section."""
    return StopRule(target=train_cfg["stop_target"], patience=train_cfg["stop_patience"],
                    higher_is_better=higher_is_better)


__all__ = ["EPOCHS", "PATIENCE", "TARGET", "StopRule", "reached", "stop_rule"]
