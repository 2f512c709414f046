"""Hierarchical supermasks with one fixed scale for every level (Okoshi et al.'s multicoated supermasks).

The seed paper's baseline: a random, never-trained NeRV whose weights are ``w * c * lambda`` with the
trained level map lambda and the layer's constant c. Everything but the scales is shared with
`methods.supermask_learned` through `methods.nerv_family.supermask_base`.
"""

from typing import ClassVar

from methods.nerv_family.supermask_base import SupermaskMethod


class SupermaskFixed(SupermaskMethod):
    name = "supermask-fixed"
    version = "1"
    description = "random NeRV, trained nested masks with one fixed scale per layer (multicoated supermasks)"
    rate_ladder: ClassVar[tuple[float, ...]] = (0.1, 0.2, 0.4)
    trains = True
    requires: ClassVar[tuple[str, ...]] = ()
    scale_mode = "fixed"
