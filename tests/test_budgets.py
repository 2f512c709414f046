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


def test_study_budget_on_a_short_clip_is_one_line(tmp_path, capsys) -> None:  # noqa: ANN001
    from bench.cli import main

    yuv = tmp_path / "short_64x64.yuv"
    np.random.default_rng(0).integers(0, 255, 64 * 64 * 3 // 2 * 8, dtype=np.uint8).tofile(yuv)
    args = ["run", "--methods", "nerv-dense", "--seq", str(yuv), "--size", "64x64", "--budget", "study"]
    assert main([*args, "--bpp", "0.2", "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "budget 'study'" in err and "has 8 frames" in err and "--frames" in err


def test_study_trains_the_cpu_clip_longer() -> None:
    """The study's records compare with the default run's codecs: the same frames, only the training differs."""
    cpu, study = get_budget("cpu"), get_budget("study")
    assert (study.frames, study.step, study.size) == (cpu.frames, cpu.step, cpu.size)
    assert study.epochs >= 8 * cpu.epochs and study.bpp_ladder == cpu.bpp_ladder


def test_texts_are_not_part_of_a_job_identity() -> None:
    from dataclasses import replace

    cpu = get_budget("cpu")
    assert cpu.caption_note and replace(cpu, caption_note="", description="").identity() == cpu.identity()
    assert "caption_note" in cpu.to_dict()  # the record keeps it, for the report's caption
