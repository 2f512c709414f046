"""The `bench` command: one sub-command per verb; each hands over to the module that owns the work."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from bench.errors import BenchError


def _cmd_ls(args: argparse.Namespace) -> int:
    if args.what == "methods":
        from bench import registry

        for name, entry in registry.discover().items():
            status = "available" if entry.unavailable is None else f"unavailable: {entry.unavailable}"
            print(f"{name:20s} {entry.description}  [{status}]")
        return 0
    from bench.data.catalog import print_sequences

    print_sequences()
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    from bench.data.fetch import fetch

    for name in args.sequences:
        path = fetch(name, url=args.url, cache_dir=args.cache_dir)
        print(f"{name}: {path}")
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from bench.scoring import score_command

    return score_command(args)


def _cmd_run(args: argparse.Namespace) -> int:
    from bench.runner import run_command

    return run_command(args)


def _cmd_decode(args: argparse.Namespace) -> int:
    from bench.runner import decode_command

    return decode_command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench", description="Benchmark neural video representations at matched bits per pixel."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ls", help="list methods or sequences")
    p.add_argument("what", choices=["methods", "sequences"])
    p.set_defaults(func=_cmd_ls)

    p = sub.add_parser("fetch", help="download and extract a sequence into the data cache")
    p.add_argument("sequences", nargs="+", help="sequence names, e.g. Jockey")
    p.add_argument("--url", default=None, help="download from this URL instead of the manifest's")
    p.add_argument("--cache-dir", default=None, help="data cache (default: $BENCH_DATA or ~/.cache/nerv-bench)")
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser("score", help="score a test image/folder/video against a reference")
    p.add_argument("ref")
    p.add_argument("test")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--flip-map", default=None, help="save the magma FLIP map of the first frame to this PNG")
    p.add_argument("--size", default=None, help="WxH, for raw .yuv inputs")
    p.add_argument("--metrics", default="psnr,ms-ssim,flip,lpips", help="comma-separated metric names")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("run", help="plan, fit, encode, decode and score methods on sequences")
    p.add_argument("--methods", default="all", help="'all' or comma-separated method names")
    p.add_argument("--seq", default="bunny", help="sequence name(s), 'uvg', or a video/.yuv/PNG-folder path")
    p.add_argument("--bpp", default=None, help="comma-separated target bits per pixel (default: each method's ladder)")
    p.add_argument("--budget", default="cpu", help="smoke | cpu | paper")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--size", default=None, help="WxH, for raw .yuv inputs")
    p.add_argument("--results", default="results", help="results directory")
    p.add_argument("--force", action="store_true", help="redo jobs that already have a record")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("decode", help="decode a stored stream to PNG frames or a video")
    p.add_argument("stream", help="a .nvbs stream written by `bench run`")
    p.add_argument("--out", required=True, help="a directory (PNG frames) or a .mp4 path")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_decode)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
