"""What a hierarchical supermask is made of: nested densities, the scale rule, and the level distribution they fix
(hence the coded size of a level map, known before training)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.errors import MethodError

SCALE_MODES = ("fixed", "learned")
WEIGHT_INITS = ("signed", "normal")  # sign(w0) * c, or w0 * c with w0 ~ N(0, 1)
SCALE_RULES = ("variance", "okoshi")  # sqrt(2 / fan_in) / sqrt(E[lambda^2]), or sqrt(2 / (fan_in k_1))
ALPHA_PARAMS = ("direct", "log")  # learned alpha_n = c * theta_n, or c * exp(theta_n)


# --- mask settings and the level distribution -------------------------------------------------------------


@dataclass(frozen=True)
class MaskSettings:
    """Everything a masked layer needs besides its shape and seed."""

    densities: tuple[float, ...] = (0.3, 0.1, 0.03)  # k_1 > ... > k_N: fraction of weights in mask n
    scale_mode: str = "fixed"
    weight_init: str = "signed"
    scale_rule: str = "variance"
    alpha_param: str = "direct"

    def __post_init__(self) -> None:
        object.__setattr__(self, "densities", tuple(float(k) for k in self.densities))
        self.validate()

    def validate(self) -> None:
        k = self.densities
        problems = []
        if not k or not all(1 > a > b for a, b in zip(k, k[1:] + (0.0,), strict=True)):
            problems.append(f"densities {list(k)} must be strictly decreasing inside (0, 1)")
        for name, value, options in (
            ("scale_mode", self.scale_mode, SCALE_MODES),
            ("weight_init", self.weight_init, WEIGHT_INITS),
            ("scale_rule", self.scale_rule, SCALE_RULES),
            ("alpha_param", self.alpha_param, ALPHA_PARAMS),
        ):
            if value not in options:
                problems.append(f"{name} '{value}' is not one of {', '.join(options)}")
        if problems:
            raise MethodError(f"invalid supermask settings: {'; '.join(problems)}")

    @property
    def num_levels(self) -> int:
        return len(self.densities)

    def level_probabilities(self) -> np.ndarray:
        """p_l = P(lambda = l) for l = 0..N: (1 - k_1, k_1 - k_2, ..., k_N)."""
        k = np.array((1.0, *self.densities, 0.0))
        return k[:-1] - k[1:]

    def entropy_bits(self) -> float:
        """H(p): coded bits per masked weight."""
        p = self.level_probabilities()
        return float(-(p * np.log2(p)).sum())

    def mean_square_level(self) -> float:
        """E[lambda^2] over the level distribution."""
        p = self.level_probabilities()
        return float((np.arange(p.size) ** 2 * p).sum())

    def scale(self, fan_in: int) -> float:
        """The layer's scale constant c (alpha_n at initialisation)."""
        if self.scale_rule == "okoshi":
            return math.sqrt(2.0 / (fan_in * self.densities[0]))
        return math.sqrt(2.0 / fan_in) / math.sqrt(self.mean_square_level())


def kept_counts(numel: int, densities: tuple[float, ...]) -> tuple[int, ...]:
    """K_n = round(k_n * numel): weights in mask n of a layer (non-increasing, so the masks nest)."""
    return tuple(min(numel, int(round(k * numel))) for k in densities)


def layer_seed(seed: int, index: int, stream: int) -> int:
    """A 63-bit seed for one layer's random stream (0: weights and bias, 1: score init), platform-independent."""
    state = np.random.SeedSequence(entropy=seed, spawn_key=(index, stream)).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))
