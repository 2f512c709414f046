"""The external ffmpeg binary beside PyAV: found once, probed once, run with a timeout.

PyAV's bundled ffmpeg has no VVC encoder and no libvmaf, so the suite also runs the static ffmpeg binary
of the `imageio-ffmpeg` wheel (libvvenc, libvmaf with its built-in models, the xpsnr filter). The
environment variable `BENCH_FFMPEG` names another binary instead. Its encoder and filter lists are read
once per binary and cached. Every failure is one line naming the cause and the fix, raised as the
caller's error class (a `MethodError` subclass for codecs, a `MetricError` for metrics).

Method adapters name what they need in `requires` (see `bench.contract.Method.unavailable_reason`):
`ffmpeg-encoder:NAME` and `ffmpeg-filter:NAME` for this binary, `av-codec:NAME` for PyAV's own ffmpeg.
"""

from __future__ import annotations

import ctypes
import glob
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import threading
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path

from bench.errors import BenchError

ENV_FFMPEG = "BENCH_FFMPEG"
INSTALL_HINT = "pip install imageio-ffmpeg"
PROBE_TIMEOUT_S = 30.0
_FLAGS = re.compile(r"^[A-Z.]{2,7}$")  # the capability column of `ffmpeg -encoders` / `-filters`


class ToolError(BenchError):
    """The external ffmpeg binary is missing, lacks a component, or failed."""


def ffmpeg_exe(error: type[BenchError] = ToolError) -> str:
    """Path of the ffmpeg binary the suite runs: `BENCH_FFMPEG`, else the imageio-ffmpeg wheel's."""
    named = os.environ.get(ENV_FFMPEG)
    if named:
        if not (os.path.isfile(named) and os.access(named, os.X_OK)):
            raise error(
                f"{ENV_FFMPEG}={named} is not an executable file; point it at an ffmpeg binary or unset it"
            )
        return named
    try:
        import imageio_ffmpeg
    except ImportError:
        raise error(f"the suite's ffmpeg binary is missing ({INSTALL_HINT})") from None
    shipped = sorted((Path(imageio_ffmpeg.__file__).parent / "binaries").glob("ffmpeg-*"))
    if shipped and os.access(shipped[-1], os.X_OK):
        return str(shipped[-1])  # the wheel's own binary, found without running it
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:  # the wheel installed without its binary
        raise error(
            f"imageio-ffmpeg has no ffmpeg binary ({str(exc).splitlines()[0]}); reinstall it ({INSTALL_HINT})"
        ) from None


_TAG = re.compile(r"^(\[[^\]]*\]\s*)+")  # ffmpeg's "[component @ 0x...] " prefixes
_TROUBLE = ("error", "invalid", "unrecognized", "unknown", "not found", "failed", "cannot")


def trouble_line(text: str) -> str:
    """The line of an ffmpeg log that says what went wrong: the first error-like one, else the last line."""
    lines = [_TAG.sub("", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line and line != "Conversion failed!"]
    for line in lines:
        if any(word in line.lower() for word in _TROUBLE):
            return line[:200]
    return lines[-1][:200] if lines else "no message"


def run(
    args: list[str],
    chunks: Iterable[bytes] | None = None,
    timeout_s: float = PROBE_TIMEOUT_S,
    error: type[BenchError] = ToolError,
    what: str = "ffmpeg",
    cwd: str | None = None,
) -> tuple[bytes, str]:
    """Run the binary with `args`, feeding `chunks` to its stdin; return (stdout, stderr).

    stdin is written and stdout / stderr read on their own threads, so a large input never deadlocks and
    never has to sit in memory at once. Past `timeout_s` the process is killed.
    """
    exe = ffmpeg_exe(error)
    try:
        proc = subprocess.Popen(
            [exe, "-hide_banner", *args],
            stdin=subprocess.PIPE if chunks is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
        )
    except OSError as exc:
        raise error(f"cannot start {exe} ({exc.strerror}); {INSTALL_HINT} or fix {ENV_FFMPEG}") from None
    out: list[bytes] = []
    err: list[bytes] = []

    def feed() -> None:
        assert proc.stdin is not None
        try:
            for chunk in chunks or ():
                proc.stdin.write(chunk)
        except (BrokenPipeError, ValueError):  # the process quit early; its stderr says why
            pass
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass

    threads = [
        threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True),  # type: ignore[union-attr]
        threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True),  # type: ignore[union-attr]
    ]
    if chunks is not None:
        threads.append(threading.Thread(target=feed, daemon=True))
    for thread in threads:
        thread.start()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise error(
            f"{what} did not finish within {timeout_s:g} s and was stopped; try a faster preset"
        ) from None
    finally:
        for thread in threads:
            thread.join(5)
    stderr = b"".join(err).decode("utf-8", "replace")
    if proc.returncode != 0:
        raise error(f"{what} failed (exit {proc.returncode}): {trouble_line(stderr)}")
    return b"".join(out), stderr


def _disk_cached(what: str, source: Path, compute: Callable[[], list[str]]) -> frozenset[str]:
    """`compute()`, remembered on disk for as long as `source` (a binary, a package file) is unchanged, so
    `bench ls methods` answers without starting ffmpeg or importing PyAV; any cache trouble just recomputes."""
    try:
        stat = source.stat()
        tag = hashlib.sha256(
            f"{what}|{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()
        ).hexdigest()
        path = (
            Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
            / "nerv-bench"
            / f"{tag[:24]}.json"
        )
        return frozenset(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        pass
    names = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(sorted(names)), encoding="utf-8")
        os.replace(tmp, path)
    except (OSError, UnboundLocalError):
        pass
    return frozenset(names)


@cache
def _listing(exe: str, kind: str) -> frozenset[str]:
    """Names in `ffmpeg -encoders` or `ffmpeg -filters` of one binary (cached per binary and on disk)."""

    def compute() -> list[str]:
        stdout, _ = run([f"-{kind}"], what=f"ffmpeg -{kind}")
        names = []
        for line in stdout.decode("utf-8", "replace").splitlines():
            fields = line.split()
            if len(fields) >= 2 and _FLAGS.match(fields[0]) and fields[1] != "=":
                names.append(fields[1])
        return names

    return _disk_cached(f"ffmpeg -{kind}", Path(exe), compute)


@cache
def pyav_codecs() -> frozenset[str]:
    """The codecs of PyAV's own ffmpeg (cached on disk per installed PyAV)."""
    spec = importlib.util.find_spec("av")
    if spec is None or not spec.origin:
        return frozenset()

    def compute() -> list[str]:
        import av

        return sorted(av.codecs_available)

    return _disk_cached("pyav codecs", Path(spec.origin), compute)


def encoders() -> frozenset[str]:
    return _listing(ffmpeg_exe(), "encoders")


def filters() -> frozenset[str]:
    return _listing(ffmpeg_exe(), "filters")


@cache
def _version(exe: str) -> str:
    stdout, _ = run(["-version"], what="ffmpeg -version")
    first = stdout.decode("utf-8", "replace").splitlines()[:1]
    match = re.match(r"ffmpeg version (\S+)", first[0]) if first else None
    return match.group(1) if match else "unknown"


def version() -> str:
    """The binary's own version string (for provenance), e.g. "n9.0.2-17-g2a571b6068-20260930"."""
    return _version(ffmpeg_exe())


def missing(requirement: str) -> str | None:
    """Why `requirement` (a `requires` entry with a colon) is not met here, or None when it is."""
    kind, _, name = requirement.partition(":")
    if kind == "av-codec":
        return None if name in pyav_codecs() else f"needs PyAV built with the codec '{name}'"
    listed = {"ffmpeg-encoder": ("encoders", encoders), "ffmpeg-filter": ("filters", filters)}
    if kind not in listed:
        return f"declares an unknown requirement '{requirement}' (a bug in the method)"
    label, names = listed[kind]
    try:
        if name in names():
            return None
    except BenchError as exc:
        return f"needs the ffmpeg {label[:-1]} '{name}': {exc}"
    return f"needs the ffmpeg {label[:-1]} '{name}', which {ffmpeg_exe()} lacks ({INSTALL_HINT})"


@cache
def pyav_library_version(library: str, symbol: str, function: bool = False) -> str:
    """A version string exported by one of the libraries bundled with PyAV (its wheel's `av.libs`).

    `symbol` is a `const char *` variable, or with `function` a function returning one. "unknown" when
    the library or the symbol is not found (a PyAV built against system libraries, say).
    """
    import av

    folder = Path(av.__file__).resolve().parent.parent / "av.libs"
    found = sorted(glob.glob(str(folder / f"{library}-*.so*"))) or sorted(
        glob.glob(str(folder / f"{library}.so*"))
    )
    if not found:
        return "unknown"
    try:
        lib = ctypes.CDLL(found[0])
        if function:
            getter = getattr(lib, symbol)
            getter.restype = ctypes.c_char_p
            value = getter()
        else:
            value = ctypes.c_char_p.in_dll(lib, symbol).value
    except (OSError, AttributeError, ValueError):
        return "unknown"
    return value.decode("ascii", "replace") if value else "unknown"
