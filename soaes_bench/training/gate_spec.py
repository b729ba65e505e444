"""A gate as a recipe declares it: the `Check` dataclass of a phase's `gates:` list, validated on load.

The recipe syntax, the two kinds of checks (point and statistical) and how they are judged:
soaes_bench/reporting/gates.py (its docstring) and docs/pipeline.md. The phases' configs (cpt.py, sft.py,
distill.py) hold their gates as `list[Check]`; reporting/gates.py judges them on results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from soaes_bench import results
from soaes_bench.config import positive

TESTS = ("superior", "non_inferior")


def _finite(name: str, v) -> None:
    if v is not None and not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v}")


@dataclass
class Check:
    name: str = field(metadata={"help": "short label shown in gate.md"})
    metric: str = field(metadata={"help": "metric key, e.g. acc, rouge1, bits_per_byte, top1_agreement"})
    task: str = field(metadata={"help": "task or group name in the results (<task>@plain: the plain-text run)"})
    op: Literal[">=", "<=", ">", "<"] | None = field(default=None, metadata={
        "help": "point checks: value op bound (default >=); statistical checks take the metric's direction"})
    threshold: float | None = field(default=None, metadata={"help": "absolute bound"})
    reference: str | None = field(default=None, metadata={"help": "results to compare with (base, previous, <phase>, ...)"})
    margin: float = field(default=0.0, metadata={
        "help": "point checks: added to the reference value (bound = ref * ratio + margin); non_inferior: the "
                "largest tolerated loss, in metric units (> 0)"})
    ratio: float | None = field(default=None, metadata={
        "help": "multiplies the reference value, e.g. 0.95 = keep 95% of the base accuracy", "check": positive})
    test: Literal["superior", "non_inferior"] | None = field(default=None, metadata={
        "help": "decide on per-item samples, paired with the reference: superior = CI of model - reference "
                "excludes 0 on the good side; non_inferior = its bad end stays within margin (Holm per phase)"})
    blocking: bool = field(default=True, metadata={
        "help": "false: judged and reported like any check (FAIL in gate.md), but a failure does not fail the "
                "phase: for claims under study (a paper effect the recipe's budget may not reach)"})

    def __post_init__(self):
        where = f"gate {self.name!r}"
        try:
            _finite("threshold", self.threshold)
            _finite("margin", self.margin)
            _finite("ratio", self.ratio)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        if self.test is None:
            if (self.threshold is None) == (self.reference is None):
                raise ValueError(f"{where}: give exactly one of threshold and reference")
            if self.ratio is not None and self.reference is None:
                raise ValueError(f"{where}: ratio needs a reference")
            if self.op is None:
                self.op = ">="
            return
        if self.test not in TESTS:
            raise ValueError(f"{where}: test must be one of {', '.join(TESTS)}, got {self.test!r}")
        if self.reference is None or self.threshold is not None:
            raise ValueError(f"{where}: test {self.test} needs a reference (and no threshold): it compares two runs "
                             f"item by item")
        if self.op is not None:
            raise ValueError(f"{where}: test {self.test} takes no op: the direction is the metric's "
                             f"(higher or lower is better)")
        if self.ratio is not None:
            raise ValueError(f"{where}: test {self.test} takes no ratio (non_inferior: give margin in metric units)")
        if self.metric in getattr(results, "DIRECTION_NEUTRAL", ()):
            raise ValueError(f"{where}: test {self.test}: {self.metric} has no better direction; use a point check "
                             f"(op with threshold or reference)")
        if self.test == "superior" and self.margin != 0:
            raise ValueError(f"{where}: test superior takes no margin (it asks for a CI clear of 0); use "
                             f"non_inferior with a margin, or a point check")
        if self.test == "non_inferior" and not self.margin > 0:
            raise ValueError(f"{where}: test non_inferior needs margin > 0 (the largest tolerated loss, in metric "
                             f"units), got {self.margin}")
