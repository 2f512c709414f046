"""Named budgets: which frames, at what size, for how long.

A budget is the whole cost model of a run, stated once so that results name it. `smoke` is for tests
(seconds), `ci` for the guarded CI benchmark, `cpu` is the default (downscaled Bunny, minutes on 2
cores), `study` trains the cpu clip to where its curves flatten (hours: --jobs 2 or Slurm), `paper`
follows the papers (full resolution, all frames, their epochs; needs a GPU). Short
budgets train at lr 5e-3: NeRV's 5e-4 suits 1000+ epochs and loses 2-3 dB in a few minutes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import ClassVar

from bench.errors import ConfigError
from bench.unkeyed import keyed_fields


@dataclass(frozen=True)
class Budget:
    name: str
    description: str
    frames: int | None  # number of frames to code; None = the whole sequence
    size: tuple[int, int] | None  # (height, width) after resizing; None = source size
    epochs: int  # training epochs for methods that train
    lr: float  # peak learning rate of NeRV-family training (short budgets need a larger one)
    batch_size: int
    train_seconds: float  # wall-clock training time per job under `--match time`
    bpp_ladder: tuple[float, ...]  # default targets: every method meets the others at these rates
    start: int = 0
    step: int = 1
    warmup: float = 0.2  # fraction of iterations of linear warm-up (NeRV: 20 %)
    codec_preset: str = "medium"  # x264/x265 speed preset
    checkpoint_every_s: float = 60.0
    # NeRV-family training precision: fp32, tf32 (fp32 with TF32 matrix units, CUDA only), bf16 (mixed: bf16
    # autocast, fp32 weights and optimizer) or auto
    # (bf16 where the device computes it natively, else fp32); records say which one ran.
    precision: str = "fp32"
    # what a figure's caption says of how far this budget's networks train (not part of a job's identity)
    caption_note: str = ""
    # the supermask scores' peak lr as a share of `lr`; None: each method's own (tuned at the short budgets).
    # Long runs need it lower (docs/study_convergence_bunny_cpu.md).
    score_lr_share: float | None = None

    # fields added after job keys existed: left out of a job's identity while they hold their default
    UNKEYED_DEFAULTS: ClassVar[tuple[str, ...]] = ("score_lr_share",)

    def to_dict(self) -> dict:
        return asdict(self)

    def identity(self) -> dict:
        """The fields a result depends on: not the ladder (it picks jobs) nor the texts that describe them."""
        not_identity = ("bpp_ladder", "description", "caption_note")
        return {k: v for k, v in keyed_fields(self).items() if k not in not_identity}


CPU_NOTE = (
    "The cpu budget stops the trained networks short of their plateaus (docs/budgets.md measures how far); "
    "the study budget trains them about 13x longer."
)
STUDY_NOTE = (
    "The study budget: 1,920 epochs, where the measured curves gain little per doubling (docs/budgets.md)."
)

BUDGETS: dict[str, Budget] = {
    "smoke": Budget(
        name="smoke",
        description="tests: 4 frames at 72x128, 80 short epochs; proves the pipeline, not quality",
        frames=4,
        size=(72, 128),
        epochs=80,
        lr=5e-3,
        batch_size=2,
        train_seconds=4.0,
        bpp_ladder=(0.5,),
        codec_preset="ultrafast",
        checkpoint_every_s=5.0,
    ),
    "ci": Budget(
        name="ci",
        description="the CI benchmark: 8 frames (one in 4) at 72x128, long enough that the trained networks "
        "model motion a still frame cannot",
        frames=8,
        step=4,  # 8 consecutive frames are nearly one picture: a repeated still frame scored 26.3 dB there
        size=(72, 128),
        epochs=450,
        lr=5e-3,
        batch_size=2,
        train_seconds=40.0,
        bpp_ladder=(0.6, 0.9),  # a still frame saturates near 23 dB here; the trained networks climb past it
        codec_preset="ultrafast",
        checkpoint_every_s=30.0,
        precision="auto",  # as the default budget trains, so CI guards what users run
    ),
    "cpu": Budget(
        name="cpu",
        description="default: 16 frames (one in 2) at 180x320, minutes per job on 2 CPU cores",
        frames=16,
        step=2,  # 1.3 s of Bunny: over 16 consecutive frames a repeated still frame scored within 1 dB of x265's
        size=(180, 320),
        epochs=150,
        lr=5e-3,
        batch_size=2,
        train_seconds=60.0,
        bpp_ladder=(0.05, 0.1, 0.2, 0.4),  # four points: BD-rate needs them
        precision="auto",  # bf16 where the CPU has it: 1.1-2x faster, ~same PSNR (docs/performance.md)
        caption_note=CPU_NOTE,
    ),
    "study": Budget(
        name="study",
        description="the study: the cpu clip trained ~13x longer, to where the curves flatten (--jobs 2 or Slurm)",
        frames=16,
        step=2,
        size=(180, 320),
        epochs=1920,
        lr=5e-3,
        batch_size=2,
        train_seconds=480.0,
        bpp_ladder=(0.05, 0.1, 0.2, 0.4),
        precision="auto",
        checkpoint_every_s=120.0,
        # 1e-3: at 1,920-2,000 epochs it tied the short budgets' 3e-3 at 0.4 bpp and beat it by 1.7 dB
        # (learned) at 0.05 bpp; nerv-dense's lr 5e-3 beat 2.5e-3 and 1e-2 at both (docs/budgets.md)
        score_lr_share=0.2,
        caption_note=STUDY_NOTE,
    ),
    "paper": Budget(
        name="paper",
        description="the papers' protocol: full resolution, all frames, 1500 epochs at NeRV's lr 5e-4 (GPU)",
        frames=None,
        size=None,
        epochs=1500,
        lr=5e-4,
        batch_size=1,
        train_seconds=3 * 3600.0,
        # the published UVG 1080p curves (NeRV, HNeRV, HiNeRV, VTM/HM) run from ~0.015 to ~0.25 bpp
        bpp_ladder=(0.015, 0.03, 0.06, 0.12, 0.25),
        codec_preset="medium",
        checkpoint_every_s=600.0,
    ),
}


def get_budget(name: str) -> Budget:
    try:
        return BUDGETS[name]
    except KeyError:
        raise ConfigError(f"unknown budget '{name}': choose one of {', '.join(BUDGETS)}") from None


# --- overrides: `--epochs 240`, `--resize 360x640`, ... on top of a named budget ---------------------------

OVERRIDABLE = ("epochs", "frames", "step", "size", "lr", "train_seconds")
FRAME_FIELDS = (
    "frames",
    "step",
    "size",
)  # the overrides that change the coded frames (codecs see only these)


def with_overrides(budget: Budget, overrides: dict[str, object] | tuple[tuple[str, object], ...]) -> Budget:
    """`budget` with some fields replaced; the name stays (the label says what changed)."""
    changes = dict(overrides)
    unknown = sorted(set(changes) - set(OVERRIDABLE))
    if unknown:
        raise ConfigError(f"budget field '{unknown[0]}' cannot be overridden: use {', '.join(OVERRIDABLE)}")
    if "size" in changes and changes["size"] is not None:
        changes["size"] = tuple(changes["size"])  # type: ignore[arg-type]
    return replace(budget, **changes)  # type: ignore[arg-type]


def budget_changes(budget: dict, base: Budget) -> dict[str, object]:
    """The overridable fields in which an effective budget (a record's dict) differs from its named base."""
    reference = base.to_dict()
    changes = {}
    for name in OVERRIDABLE:
        value = budget.get(name)
        ref = reference.get(name)
        if isinstance(value, list):
            value = tuple(value)
        if isinstance(ref, list):
            ref = tuple(ref)
        if value != ref:
            changes[name] = value
    return changes


def budget_label(name: str, changes: dict[str, object]) -> str:
    """`cpu` or `cpu[epochs=240,size=360x640]`: how a run names its effective budget."""
    if not changes:
        return name
    parts = []
    for key, value in sorted(changes.items()):
        if key == "size" and value is not None:
            height, width = value  # type: ignore[misc]
            value = f"{height}x{width}"
        elif isinstance(value, float):
            value = f"{value:g}"
        parts.append(f"{key}={value}")
    return f"{name}[{','.join(parts)}]"
