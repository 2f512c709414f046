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


def test_a_budgets_score_lr_share_is_keyed_only_when_set() -> None:
    """Budgets without a score-lr share keep the job keys they had before the field existed."""
    from dataclasses import replace

    cpu = get_budget("cpu")
    assert cpu.score_lr_share is None and "score_lr_share" not in cpu.identity()
    assert replace(cpu, score_lr_share=0.2).identity() == {**cpu.identity(), "score_lr_share": 0.2}


@pytest.mark.parametrize("backbone", ["nerv", "hnerv"])
def test_the_study_budget_trains_supermask_scores_at_its_share(backbone: str) -> None:
    """Long runs take the scores' lr the 2,000-epoch ladder measured best, on either backbone."""
    from methods.nerv_family.supermask_base import SupermaskConfig

    study, cpu = get_budget("study"), get_budget("cpu")
    config = SupermaskConfig(backbone=backbone)
    assert study.score_lr_share is not None
    assert config.score_lr_at(study) == pytest.approx(study.score_lr_share * study.lr)
    assert config.score_lr_at(cpu) == pytest.approx((0.2 if backbone == "hnerv" else 0.6) * cpu.lr)
    assert SupermaskConfig(score_lr=7e-4).score_lr_at(study) == 7e-4  # a method's own setting wins
