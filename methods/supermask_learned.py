"""Hierarchical supermasks with learned per-level scales (Choi, Kang, Oh, ICML 2023).

The seed paper's method: a random, never-trained NeRV whose weights are ``w * sum_n alpha_n mask_n`` with
trained nested masks and trained alphas (per layer and level, starting at the fixed-scale model). The
stream holds the seed, the level maps and the alphas; everything else is shared with
`methods.supermask_fixed` through `methods.nerv_family.supermask_base`.
"""

from typing import ClassVar

from methods.nerv_family.supermask_base import SupermaskMethod


class SupermaskLearned(SupermaskMethod):
    name = "supermask-learned"
    version = "1"
    description = "random NeRV, trained nested masks and learned per-level scales (the seed paper)"
    rate_ladder: ClassVar[tuple[float, ...]] = (0.1, 0.2, 0.4)
    trains = True
    requires: ClassVar[tuple[str, ...]] = ()
    scale_mode = "learned"
