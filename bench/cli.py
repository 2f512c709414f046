"""The `bench` command: one sub-command per verb; each hands over to the module that owns the work."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.errors import BenchError


def _cmd_ls(args: argparse.Namespace) -> int:
    if args.what == "methods":
        from bench import registry

        for name, entry in registry.discover().items():
            status = "available" if entry.unavailable is None else f"unavailable: {entry.unavailable}"
            if not entry.in_default_run:
                status += "; opt-in: not in --methods all, name it"
            rates = ", ".join(f"{r:g}" for r in entry.rate_ladder) or "-"
            print(f"{name:20s} {entry.description}  (bpp {rates})  [{status}]")
        return 0
    if args.what == "params":
        return _list_params(args.method)
    if args.method:
        raise BenchError(f"`bench ls {args.what}` takes no method name")
    from bench.data.catalog import print_sequences

    print_sequences()
    return 0


def _list_params(method: str | None) -> int:
    from bench import registry
    from bench.params import format_value, parameters

    if not method:
        raise BenchError("`bench ls params` needs a method name, e.g. `bench ls params nerv-dense`")
    table = parameters(registry.get(method))
    width = max(len(p.name) for p in table)
    types = max(len(p.type_name) for p in table)
    print(f"{method}: set with --methods '{method}[param=value,...]' ('|' for a grid, '/' inside tuples)")
    for p in table:
        print(f"  {p.name:{width}s}  {p.type_name:{types}s}  default {format_value(p.default):10s}  {p.help}")
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    from bench.data.fetch import fetch_all
    from bench.paths import check_output_folder

    if args.cache_dir:
        check_output_folder(Path(args.cache_dir), "--cache-dir")
    return fetch_all(args.sequences, url=args.url, cache_dir=args.cache_dir)


def _cmd_score(args: argparse.Namespace) -> int:
    from bench.scoring import score_command

    return score_command(args)


def _cmd_run(args: argparse.Namespace) -> int:
    from bench.commands import run_command

    return run_command(args)


def _cmd_results(args: argparse.Namespace) -> int:
    from bench.commands import results_command

    return results_command(args)


def _cmd_report(args: argparse.Namespace) -> int:
    from reports.build import report_command

    return report_command(args)


def _cmd_check(args: argparse.Namespace) -> int:
    from bench.check import check_command

    return check_command(args)


def _cmd_perf(args: argparse.Namespace) -> int:
    from bench.perf import perf_command

    return perf_command(args)


def _cmd_decode(args: argparse.Namespace) -> int:
    from bench.commands import decode_command

    return decode_command(args)


def build_parser() -> argparse.ArgumentParser:
    from bench.runconfig import add_run_flags

    parser = argparse.ArgumentParser(
        prog="bench", description="Benchmark neural video representations at matched bits per pixel."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ls", help="list methods, sequences, or a method's parameters")
    p.add_argument("what", choices=["methods", "sequences", "params"])
    p.add_argument("method", nargs="?", default=None, help="the method whose parameters `ls params` lists")
    p.set_defaults(func=_cmd_ls)

    p = sub.add_parser("fetch", help="download and extract a sequence into the data cache")
    p.add_argument("sequences", nargs="+", help="sequence names, e.g. Jockey, or a dataset: uvg (all seven)")
    p.add_argument("--url", default=None, help="download from this URL instead of the manifest's")
    p.add_argument(
        "--cache-dir", default=None, help="data cache (default: $BENCH_DATA or ~/.cache/nerv-bench)"
    )
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser("score", help="score a test image/folder/video against a reference")
    p.add_argument("ref")
    p.add_argument("test")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--flip-map", default=None, help="save the magma FLIP map of the first frame to this PNG")
    p.add_argument("--size", default=None, help="WxH, for raw .yuv inputs")
    p.add_argument(
        "--metrics",
        default=None,
        help="comma-separated metric names or 'all' (default: every metric a run records, LPIPS when its weights are present)",
    )
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser(
        "run", help="plan, fit, encode, decode and score methods on sequences (a resumable grid)"
    )
    p.add_argument("--config", default=None, help="YAML file of run options; flags override it")
    add_run_flags(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("results", help="export every record of a results directory as one table")
    p.add_argument("--results", default="results")
    p.add_argument("--format", default="csv", choices=["csv", "parquet", "json"])
    p.add_argument("--out", default=None, help="output file (default: stdout; required for parquet)")
    p.set_defaults(func=_cmd_results)

    p = sub.add_parser(
        "report", help="render the HTML report (RD curves, BD-rates, FLIP maps) of a results directory"
    )
    p.add_argument("--results", default="results")
    p.add_argument("--out", default=None, help="HTML file (default: <results>/report.html)")
    p.add_argument("--anchor", default="nerv-dense", help="method the BD-rates are measured against")
    p.add_argument(
        "--metric",
        default="psnr",
        help="metric of the BD table and an extra RD panel: psnr (default), vmaf, psnr-yuv, xpsnr, ms-ssim, ...",
    )
    p.add_argument(
        "--claims",
        default=None,
        help="a `bench check` file whose claims get verdicts (default: <results>/claims.yaml if there)",
    )
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser(
        "check", help="compare results with committed metric thresholds; exit 1 if any falls short"
    )
    p.add_argument("--results", default="results")
    p.add_argument("--thresholds", required=True, help="YAML file of bounds and ordering claims")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("perf", help="time the hot paths against their plain baselines, side by side")
    p.add_argument(
        "section", nargs="?", default="all", choices=["train", "masks", "coding", "metrics", "decode", "all"]
    )
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="alternating runs of the training comparison (best epoch over all)",
    )
    p.set_defaults(func=_cmd_perf)

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
    except BrokenPipeError:  # `bench ls methods | head`: the reader left; nothing to report
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
