"""The paper budget's rate ladder covers the published UVG range, and the NeRV family can be sized there."""

from __future__ import annotations

import numpy as np
import pytest

from bench import registry
from bench.budgets import get_budget
from bench.contract import Clip, SeqInfo

PAPER = get_budget("paper")


def test_paper_ladder_spans_the_published_uvg_range() -> None:
    ladder = PAPER.bpp_ladder
    assert len(ladder) >= 4 and list(ladder) == sorted(set(ladder))  # BD-rate needs four points
    # NeRV, HNeRV, HiNeRV and the VTM/HM anchors publish UVG 1080p points from ~0.013 to ~0.25 bpp
    assert ladder[0] <= 0.016 and ladder[-1] >= 0.24


@pytest.mark.parametrize("method", ["nerv-dense", "supermask-learned"])
def test_paper_ladder_is_reachable_on_uvg_1080p(method: str) -> None:
    """Each rate plans to a network on a 600-frame 1080p sequence (planning reads the size, not the frames)."""
    info = SeqInfo("Jockey", 1920, 1080, 600, 120.0)
    clip = Clip(info, np.zeros((1, 8, 8, 3), np.uint8))
    cls = registry.get(method)
    for bpp in PAPER.bpp_ladder:
        config = cls().plan(clip, bpp, PAPER)
        assert config.architecture().output_size == (1080, 1920), bpp
