"""`bench perf`: each section measures what it says (the ratios themselves are machine figures, not asserted,
except the coder's, which is deterministic), and reaches the methods' timings through the registry."""

from __future__ import annotations

import pytest

from methods.nerv_family.timing.coding import perf_coding
from methods.nerv_family.timing.train import perf_train, perf_train_hinerv, perf_train_hnerv


def test_coded_size_stays_within_one_percent_of_the_entropy_bound(capsys: pytest.CaptureFixture) -> None:
    result = perf_coding(count=200_000)
    for name in ("weights", "level maps"):
        assert 1.0 <= result[name]["ratio"] <= 1.01, (name, result[name])
        assert result[name]["encode_MBps"] > 0 and result[name]["decode_MBps"] > 0
    assert "entropy bound" in capsys.readouterr().out


def test_train_section_times_every_loop_against_the_plain_one(capsys: pytest.CaptureFixture) -> None:
    result = perf_train(sizes=((72, 128),), repeats=1)
    entry = result["sizes"]["128x72"]
    assert entry["plain_fps"] > 0
    loops = entry["loops"]
    assert {name.rsplit(" ", 1)[0] for name in loops} == {
        "nerv-dense",
        "supermask-fixed",
        "supermask-learned",
    }
    assert "nerv-dense fp32" in loops
    for name, loop in loops.items():
        assert loop["fps"] > 0 and loop["ratio"] == pytest.approx(loop["fps"] / entry["plain_fps"])
        if name.startswith("supermask"):
            assert loop["step_vs_dense"] > 0
    out = capsys.readouterr().out
    assert "plain loop" in out and "step" in out and "nerv-dense's" in out


def test_mask_step_timing_covers_dense_and_both_variants() -> None:
    from methods.nerv_family.backbones.nerv import NeRVConfig
    from methods.nerv_family.timing.masks import perf_masks

    arch = NeRVConfig(stem_dims=(16,), fc_dim=4, lower_width=4, strides=(2, 2, 2), embed_levels=8)
    for precision in ("fp32", "bf16"):
        result = perf_masks(arch, batch_size=2, steps=2, precision=precision)
        assert min(result[k] for k in ("dense_ms", "fixed_ms", "learned_ms", "masks_ms", "selection_ms")) > 0
        assert result["learned_ratio"] == pytest.approx(result["learned_ms"] / result["dense_ms"])
        assert result["masked_weights"] > 0


def test_decode_timing_renders_both_decoded_models_beside_a_plain_render(capsys) -> None:
    from methods.nerv_family.timing.decode import perf_decode

    result = perf_decode(frames=2, repeats=1, sizes=(("72x128", (72, 128)),))
    assert set(result) == {"nerv-dense 72x128", "supermask 72x128", "plain 72x128"}
    assert min(result.values()) > 0
    assert "the plain NCHW render" in capsys.readouterr().out


def test_bench_reaches_method_timings_through_the_registry_only() -> None:
    import ast
    from pathlib import Path

    import bench
    from bench.perf import SECTIONS, method_sections

    for path in Path(bench.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            leaked = [n for n in names if n == "methods" or n.startswith("methods.")]
            assert not leaked or path.name == "registry.py", f"{path.name} imports {leaked}"
    found = {section: method_sections(section) for section in SECTIONS if section != "metrics"}
    assert all(len(timings) == 1 for timings in found.values()), found  # shared timings run once


def test_train_section_times_hnerv_against_its_plain_loop(capsys: pytest.CaptureFixture) -> None:
    result = perf_train_hnerv(size=(72, 128), repeats=1)
    assert result["plain_fps"] > 0 and result["ratio"] == pytest.approx(result["fps"] / result["plain_fps"])
    assert "hnerv" in capsys.readouterr().out


def test_train_section_times_hinerv_on_patches_against_its_plain_loop(capsys: pytest.CaptureFixture) -> None:
    result = perf_train_hinerv(size=(72, 128), repeats=1)
    assert result["plain_fps"] > 0 and result["ratio"] == pytest.approx(result["fps"] / result["plain_fps"])
    assert result["cpu_ratio"] > 0 and result["size"] == "128x72"
    compiled = result["compiled"]  # the same loop compiled, as long runs train it
    assert compiled["ratio"] == pytest.approx(compiled["fps"] / result["plain_fps"])
    assert compiled["compile_s"] > 0 and compiled["break_even_steps"] > 0
    out = capsys.readouterr().out
    assert "hinerv" in out and "patches" in out and "hinerv compiled" in out and "earned back after" in out


def test_hinerv_timing_leaves_out_the_compiled_loop_where_nothing_can_compile(
    capsys: pytest.CaptureFixture,
) -> None:
    import torch._inductor.config as inductor

    with inductor.patch({"cpp.cxx": (None, "no-such-c++")}):
        result = perf_train_hinerv(size=(72, 128), repeats=1)
    assert "compiled" not in result and result["ratio"] > 0
    assert "hinerv's compiled loop is not timed: no C++ compiler" in capsys.readouterr().out
