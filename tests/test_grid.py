"""Grids: method parameters and budget overrides from the command line or a config file, typed records,
the lazy registry, and the dry run's estimates."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import registry, store
from bench.cli import main
from bench.grid import method_variants
from bench.record import Record, job_key
from bench.runconfig import resolve_options

SMOKE = ["--seq", "bunny", "--budget", "smoke"]
V1 = Path(__file__).parent / "data" / "records_v1"


def one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def dry_run(args: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> str:
    capsys.readouterr()
    assert main(["run", *args, "--results", str(tmp_path / "res"), "--dry-run"]) == 0
    return capsys.readouterr().out


# --- method specs --------------------------------------------------------------------------------------------


def test_a_list_value_expands_the_grid_and_values_take_the_fields_types() -> None:
    variants = method_variants(
        "supermask-learned[alpha_lr=0.01,densities=0.5/0.25/0.1],nerv-dense[lr=0.005|0.01]"
    )
    assert [v.label for v in variants] == [
        "supermask-learned[alpha_lr=0.01,densities=0.5/0.25/0.1]",
        "nerv-dense[lr=0.005]",
        "nerv-dense[lr=0.01]",
    ]
    assert dict(variants[0].params) == {"alpha_lr": 0.01, "densities": (0.5, 0.25, 0.1)}
    # a value equal to the default is no variant: the job is the default one, with its key
    assert method_variants("nerv-dense[loss=mse,bits=8]")[0].params == ()
    assert dict(method_variants("nerv-dense[rate_control=false,epochs=none]")[0].params) == {
        "rate_control": False
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nerv-dense[lrr=0.01]", "method 'nerv-dense' has no parameter 'lrr': did you mean 'lr'?"),
        (
            "nerv-dense[bits=eight]",
            "method 'nerv-dense' parameter 'bits' (int): expected an integer, got 'eight'",
        ),
        ("nerv-dense[lr=nan]", "parameter 'lr' (float | None): expected float | None, got 'nan'"),
        ("nerv-dense[lr=0.01", "malformed method spec 'nerv-dense[lr=0.01': '[' without ']'"),
        ("nerv-dense]lr=1", "malformed method spec 'nerv-dense]lr=1': ']' without '['"),
        ("nerv-dense[lr]", "'lr' is not param=value"),
        ("nerv-dense[lr=0.01,lr=0.02]", "sets 'lr' twice; give it once (use | for a grid)"),
        ("x264,x264", "method 'x264' is listed twice; give it once"),
        ("x264,", "holds an empty entry"),
        ("nerv-dens", "unknown method 'nerv-dens': did you mean 'nerv-dense'?"),
        (
            "hinerv[compile=maybe]",
            "parameter 'compile' (bool): expected true or false, got 'maybe'",
        ),
        (
            "supermask-learned[densities=0.3/x]",
            "parameter 'densities' (tuple[float, ...]): expected a number",
        ),
    ],
)
def test_bad_method_specs_are_one_line_and_run_nothing(
    spec: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--methods", spec, *SMOKE, "--results", str(tmp_path / "res")]) == 2
    err = one_line(capsys.readouterr().err)
    assert message in err
    assert "its parameters are" in err if "has no parameter" in message else True
    assert not (tmp_path / "res").exists()


def test_unknown_parameter_lists_the_methods_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--methods", "x264[qp=20]", *SMOKE, "--dry-run"]) == 2
    assert "its parameters are crf, preset, gop" in capsys.readouterr().err


def test_a_default_valued_spec_is_the_default_job_and_parameters_change_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = dry_run(["--methods", "nerv-dense", *SMOKE], capsys, tmp_path).split()[0]
    same = dry_run(["--methods", "nerv-dense[lr=none,loss=mse]", *SMOKE], capsys, tmp_path).split()[0]
    other = dry_run(["--methods", "nerv-dense[lr=0.01]", *SMOKE], capsys, tmp_path)
    assert plain == same and plain not in other and "nerv-dense[lr=0.01] on bunny" in other


# --- budget overrides ------------------------------------------------------------------------------------------


def test_budget_overrides_are_grid_axes_and_codecs_do_not_repeat(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = dry_run(
        ["--methods", "x264,nerv-dense", *SMOKE, "--epochs", "20,40", "--lr", "0.01"], capsys, tmp_path
    )
    assert "nerv-dense on bunny at 0.5 bpp (smoke[epochs=20,lr=0.01], seed 0)" in out
    assert "nerv-dense on bunny at 0.5 bpp (smoke[epochs=40,lr=0.01], seed 0)" in out
    assert out.count("x264 on bunny") == 1 and "3 jobs" in out  # a codec does not train: one job per rate
    out = dry_run(["--methods", "x264", *SMOKE, "--resize", "36x64,72x128"], capsys, tmp_path)
    assert "(smoke[size=36x64], seed 0)" in out and "(smoke, seed 0)" in out  # 72x128 is the smoke size


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--epochs", "ten"], "--epochs must be comma-separated numbers, got 'ten'"),
        (["--epochs", "0"], "--epochs values must be positive, got '0'"),
        (["--lr", "inf"], "--lr values must be finite numbers, got 'inf'"),
        (["--resize", "320"], "--resize must be HEIGHTxWIDTH, e.g. 180x320, got '320'"),
        (["--bpp", "nan"], "--bpp values must be finite numbers, got 'nan'"),
        (["--bpp", "0.5,0.5"], "--bpp lists a value twice ('0.5,0.5'); give each once"),
        (["--frames", "400"], "budget 'smoke' asks for"),
        (
            [
                "--seeds",
                "0",
                "--seed",
                "0",
                "--repeats",
                "1",
                "--bpp",
                ",".join(str(0.01 * i) for i in range(1, 102)),
            ]
            + ["--seeds", ",".join(str(i) for i in range(100))],
            "expands to 10,100 jobs",
        ),
    ],
)
def test_bad_overrides_are_one_line(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--methods", "x264", *SMOKE, *flags, "--dry-run"]) == 2
    assert message in one_line(capsys.readouterr().err)


def test_a_huge_grid_runs_with_yes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rates = ",".join(f"{0.01 * i:g}" for i in range(1, 102))
    seeds = ",".join(str(i) for i in range(100))
    out = dry_run(["--methods", "x264", *SMOKE, "--bpp", rates, "--seeds", seeds, "--yes"], capsys, tmp_path)
    assert "10100 jobs, 10100 to run" in out


def test_an_override_that_puts_the_rate_out_of_reach_is_skipped_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "res"
    code = main(
        [
            "run",
            "--methods",
            "nerv-dense",
            *SMOKE,
            "--resize",
            "16x16",
            "--bpp",
            "0.05",
            "--results",
            str(results),
        ]
    )
    assert code == 0
    (failure,) = store.load_results(results).failed
    assert failure.status == "skipped" and failure.stage == "plan" and "\n" not in failure.reason
    assert failure.budget_label == "smoke[size=16x16]" and "bpp" in failure.reason


# --- a config file holds a whole grid -----------------------------------------------------------------------------


def test_a_config_file_holds_methods_with_parameter_lists_rates_seeds_and_overrides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "grid.yaml"
    config.write_text(
        "seq: bunny\nbudget: smoke\nbpp: [0.5, 1.0]\nseeds: [3, 4]\nepochs: [10, 20]\n"
        "methods:\n"
        "  - x264\n"
        "  - {nerv-dense: {lr: [0.005, 0.01], loss: nerv}}\n"
        "  - {supermask-learned: {densities: [0.3, 0.1]}}\n"  # a flat list for a tuple field is one tuple
    )
    out = dry_run(["--config", str(config)], capsys, tmp_path)
    # x264: 2 rates x 2 seeds; nerv-dense: 2 lr x 2 epochs x 2 rates x 2 seeds; supermask: 2 epochs x 2 x 2
    assert "28 jobs" in out
    assert "nerv-dense[loss=nerv,lr=0.005] on bunny at 1 bpp (smoke[epochs=20], seed 4)" in out
    assert "supermask-learned[densities=0.3/0.1]" in out
    options = resolve_options({}, str(config))
    assert options.seed_list() == [3, 4] and options.budget_axes() == {"epochs": [10, 20]}


def test_the_supermask_sweep_is_a_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = Path(__file__).parents[1] / "docs" / "grids" / "supermask_sweep.yaml"
    out = dry_run(["--config", str(config)], capsys, tmp_path)
    assert "24 jobs" in out and "(cpu[epochs=80], seed 0)" in out


# --- records ------------------------------------------------------------------------------------------------------


def test_records_of_the_previous_layout_still_read_and_verify(tmp_path: Path) -> None:
    results = tmp_path / "res"
    shutil.copytree(V1, results / "jobs", ignore=shutil.ignore_patterns("failed"))
    shutil.copytree(V1 / "failed", results / "failed")
    loaded = store.load_results(results)
    assert sorted(r.method for r in loaded.finished) == ["nerv-dense", "x264"] and loaded.rejected == []
    (skipped,) = loaded.failed
    assert skipped.status == "skipped" and skipped.schema_version == 2 and skipped.params == {}
    dense = next(r for r in loaded.finished if r.method == "nerv-dense")
    assert dense.mean("psnr") and dense.label == "nerv-dense" and dense.budget_label == "smoke"
    assert main(["report", "--results", str(results)]) == 0
    assert (
        main(["results", "--results", str(results), "--format", "json", "--out", str(tmp_path / "t.json")])
        == 0
    )
    assert len(json.loads((tmp_path / "t.json").read_text())) == 3


def test_a_record_that_is_not_what_it_claims_is_rejected_never_merged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "res"
    shutil.copytree(V1, results / "jobs", ignore=shutil.ignore_patterns("failed"))
    x264 = results / "jobs" / "x264-19414d368e6f1fed"
    record = json.loads((x264 / store.RECORD).read_text())
    (x264 / store.RECORD).write_text(
        json.dumps({**record, "method": "x265"})
    )  # hand-edited to another method
    dense = results / "jobs" / "nerv-dense-d6a403d96d9b06d8"
    (dense / store.STREAM).write_bytes(
        (dense / store.STREAM).read_bytes() + b"\0"
    )  # another stream swapped in
    loaded = store.load_results(results)
    assert loaded.finished == []
    reasons = " | ".join(r.reason for r in loaded.rejected)
    assert "method 'x265' contradicts its identity ('x264')" in reasons
    assert "holds 2295 bytes, the record says 2294" in reasons
    assert main(["report", "--results", str(results)]) == 0
    summary = (results / "summary.md").read_text()
    assert "| rejected |" in summary and "contradicts its identity" in summary
    # a rerun moves an unverifiable job of its own aside and redoes it
    fresh = tmp_path / "fresh"
    assert main(["run", "--methods", "x264", *SMOKE, "--results", str(fresh)]) == 0
    (job,) = store.jobs_dir(fresh).iterdir()
    (job / store.STREAM).write_bytes(b"swapped")
    assert store.load_results(fresh).finished == []
    assert main(["run", "--methods", "x264", *SMOKE, "--results", str(fresh)]) == 0
    assert [r.method for r in store.load_results(fresh).finished] == ["x264"]
    assert len(list((fresh / "rejected").iterdir())) == 1


def test_record_types_are_checked_on_read(tmp_path: Path) -> None:
    path = V1 / "x264-19414d368e6f1fed" / store.RECORD
    data = json.loads(path.read_text())
    with pytest.raises(Exception, match="field 'seed' should be an integer, got str"):
        Record.from_dict({**data, "seed": "0"})
    with pytest.raises(Exception, match="lacks 'identity'"):
        Record.from_dict({k: v for k, v in data.items() if k != "identity"})
    assert Record.from_dict(data).key == job_key(data["identity"])


# --- the registry, the parameter listing, the dry run --------------------------------------------------------------


def test_ls_methods_imports_no_torch_and_agrees_with_the_classes() -> None:
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "from bench.cli import main; main(['ls', 'methods'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    imported = {
        line.split("|")[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time")
    }
    adapters = {entry.module for entry in registry.discover().values()}
    assert "torch" not in imported and not imported & adapters  # (light package __init__s may be read)
    assert "nerv-dense" in run.stdout and "[available]" in run.stdout
    for name, entry in registry.discover().items():
        cls = registry.get(name)
        assert (entry.description, entry.rate_ladder, entry.trains) == (
            cls.description,
            cls.rate_ladder,
            cls.trains,
        )
        assert tuple(entry.attributes["requires"]) == tuple(cls.requires)


def test_ls_params_lists_type_default_and_meaning(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", "params", "nerv-dense"]) == 0
    out = capsys.readouterr().out
    assert "loss" in out and "str" in out and "default mse" in out and "0.7 L1 + 0.3 (1 - SSIM)" in out
    assert "lr" in out and "float | None" in out
    assert main(["ls", "params", "nerv-dens"]) == 2
    assert "did you mean 'nerv-dense'?" in capsys.readouterr().err


def test_dry_run_estimates_from_the_records_it_has(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "res"
    out = dry_run(["--methods", "x264", *SMOKE, "--bpp", "0.5,1"], capsys, tmp_path)
    assert "2 jobs, 2 to run: about" in out and "(estimate default)" in out
    assert main(["run", "--methods", "x264", *SMOKE, "--bpp", "0.5", "--results", str(results)]) == 0
    out = dry_run(["--methods", "x264", *SMOKE, "--bpp", "0.5,1"], capsys, tmp_path)
    assert "[finished]" in out and "1 to run" in out and "fitted on 1 records" in out
    paper = ["--methods", "nerv-dense", "--seq", "bunny", "--budget", "paper", "--bpp", "0.1"]
    assert "GPU hours" not in dry_run(paper, capsys, tmp_path)  # a cpu run
    out = dry_run([*paper, "--device", "cuda"], capsys, tmp_path)  # planned on a machine without a GPU
    assert "GPU hours" in out and "assuming a GPU" in out


def test_every_trained_method_offers_both_losses() -> None:
    """NeRV's 0.7 L1 + 0.3 (1 - SSIM) and MSE are a parameter of every trained method (default: mse)."""
    from bench.params import parameters

    for name, entry in registry.discover().items():
        if entry.trains and entry.unavailable is None:
            table = {p.name: p for p in parameters(registry.get(name))}
            assert "loss" in table and table["loss"].default == "mse", name
            assert "nerv" in table["loss"].help, name
