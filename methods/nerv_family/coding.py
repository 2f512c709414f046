"""Weight quantization and entropy coding for the NeRV-family streams.

Each tensor is quantized with a min/max affine map onto ``levels + 1`` symbols (NeRV's 8 bits: ``scale =
(max - min) / (2^bits - 1)``), either per output channel or per tensor, whichever codes smaller with its
side information. `fit_levels` tunes the level count so that a stream lands on a planned size. The symbols
are range coded (`constriction`) with one entropy model per tensor, again whichever is smallest in total:
the tensor's own histogram (stored, Exp-Golomb coded), a discretised Gaussian or Laplace fitted to it (two
numbers), or a uniform model. So the coded size sits at the empirical entropy plus the side information,
while tiny tensors (biases, small layers) do not pay for a 256-entry histogram.

The quantization offsets and scales are rounded to their stored precision *before* the symbols are
computed, and `dequantize` is the one function that turns stored values back into weights: the training
process and the decoder therefore see bit-identical weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bench.errors import BitstreamError

AXES = ("auto", "channel", "tensor")
MODELS = ("hist", "gauss", "laplace", "uniform")
MAX_LEVELS = (1 << 16) - 1
MAX_SYMBOLS = 1 << 31
_PARAM_FREQ_BITS = 20  # parametric models are turned into integer frequencies at this precision
# The size model of `encode_tensors`' output, for sizing a network before training. Coded bits per 8-bit
# weight after range coding: 6.5-6.6 measured on Bunny networks trained 300 epochs at the cpu size (short runs
# code nearer 8 bits, long ones lower; rate control absorbs the difference).
BITS_PER_WEIGHT_AT_8 = 6.6
SIDE_BITS_PER_TENSOR = 100  # flags, float16 offset and scale, two float32 model parameters
TENSORS_SLACK_BITS = 64 + 8  # the range coder's final word and the side section's byte padding


# --- bit packing of the side information ------------------------------------------------------------------


class BitWriter:
    """MSB-first bit packer for the side information (flags, floats, Exp-Golomb counts)."""

    def __init__(self) -> None:
        self._value = 0
        self.length = 0

    def write(self, value: int, nbits: int) -> None:
        if nbits:
            self._value = (self._value << nbits) | (int(value) & ((1 << nbits) - 1))
            self.length += nbits

    def write_expgolomb(self, value: int, k: int) -> None:
        """Order-k Exp-Golomb code of a non-negative integer: small values cost few bits."""
        high = (int(value) >> k) + 1
        width = high.bit_length()
        self.write(0, width - 1)
        self.write(high, width)
        self.write(value, k)

    def getvalue(self) -> bytes:
        pad = -self.length % 8
        return ((self._value << pad).to_bytes((self.length + pad) // 8, "big")) if self.length else b""


class BitReader:
    """Reads what `BitWriter` wrote; running past the end is a corrupt stream, never an exception leak."""

    def __init__(self, data: bytes) -> None:
        self._bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8)).astype(np.int64)
        self.pos = 0

    def read(self, nbits: int) -> int:
        if nbits == 0:
            return 0
        if self.pos + nbits > self._bits.size:
            raise BitstreamError("stream is corrupt: side information ends early; re-encode it")
        chunk = self._bits[self.pos : self.pos + nbits]
        self.pos += nbits
        return int(chunk @ (1 << np.arange(nbits - 1, -1, -1, dtype=np.int64)))

    def read_expgolomb(self, k: int, limit: int) -> int:
        zeros = 0
        while self.read(1) == 0:
            zeros += 1
            if zeros > 40:
                raise BitstreamError("stream is corrupt: an Exp-Golomb code never ends; re-encode it")
        high = (1 << zeros) | self.read(zeros)
        value = ((high - 1) << k) | self.read(k)
        if value > limit:
            raise BitstreamError(
                f"stream is corrupt: a histogram count {value} exceeds {limit}; re-encode it"
            )
        return value

    def finish(self) -> None:
        """Refuse anything after the last field but the zero padding of the final byte."""
        rest = self._bits[self.pos :]
        if rest.size >= 8 or rest.any():
            raise BitstreamError(
                f"stream is corrupt: {rest.size} bits of side information left unread; re-encode it"
            )


def _expgolomb_bits(values: np.ndarray, k: int) -> int:
    high = (values.astype(np.int64) >> k) + 1
    widths = np.floor(np.log2(high)).astype(np.int64) + 1
    return int((2 * widths - 1 + k).sum())


# --- quantization -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quantized:
    """A tensor as stored: integer symbols plus the offsets and scales (already at stored precision)."""

    symbols: np.ndarray  # int32, flattened in the tensor's order
    shape: tuple[int, ...]
    per_channel: bool
    half: bool  # offsets and scales stored as float16 (else float32)
    offsets: np.ndarray  # float32, one per channel (or one)
    scales: np.ndarray  # float32, likewise

    @property
    def side_bits(self) -> int:
        return 2 * self.offsets.size * (16 if self.half else 32)


def _fits_half(values: np.ndarray) -> bool:
    with np.errstate(over="ignore"):
        half = values.astype(np.float16)
    if not np.all(np.isfinite(half)):
        return False
    nonzero = values != 0
    return bool(np.all(np.abs(half[nonzero]) >= np.finfo(np.float16).smallest_normal))


def _stored_range(
    low: np.ndarray, high: np.ndarray, levels: int, store: type
) -> tuple[np.ndarray, np.ndarray]:
    """Offsets rounded down and scales rounded up to the stored precision, as float32.

    Rounding this way keeps every value inside [offset, offset + levels * scale], so no weight is clipped
    by more than half a step however fine the quantizer (at 4095 levels a float16 scale rounded to nearest
    could cut the largest weights by two steps).
    """
    with np.errstate(over="ignore"):
        offsets = low.astype(store)
        offsets = np.where(offsets.astype(np.float32) > low, np.nextafter(offsets, store(-np.inf)), offsets)
        span = high - offsets.astype(np.float32)
        scales = (span / np.float32(levels)).astype(store)
        short = scales.astype(np.float32) * np.float32(levels) < span
        scales = np.where(short, np.nextafter(scales, store(np.inf)), scales)
    return offsets.astype(np.float32), scales.astype(np.float32)


def quantize(tensor: torch.Tensor, levels: int, per_channel: bool) -> Quantized:
    """Min/max affine quantization onto 0..levels, along dim 0 (output channels) or over the whole tensor."""
    values = tensor.detach().to("cpu", torch.float32).numpy()
    shape = tuple(values.shape)
    rows = values.reshape(shape[0], -1) if per_channel and values.ndim > 1 else values.reshape(1, -1)
    low, high = rows.min(axis=1), rows.max(axis=1)
    half = _fits_half(low) and _fits_half((high - low) / np.float32(levels))
    offsets, scales = _stored_range(low, high, levels, np.float16 if half else np.float32)
    safe = np.where(scales > 0, scales, np.float32(1))[:, None]
    symbols = np.rint((rows - offsets[:, None]) / safe)
    symbols = np.where(scales[:, None] > 0, symbols, 0).clip(0, levels).astype(np.int32)
    return Quantized(symbols.reshape(-1), shape, rows.shape[0] > 1, half, offsets, scales)


def dequantize(q: Quantized) -> torch.Tensor:
    """offset + scale * symbol in float32: the one definition of the decoded weights."""
    rows = torch.from_numpy(q.symbols.reshape(q.offsets.size, -1)).float()
    weights = torch.from_numpy(q.offsets)[:, None] + torch.from_numpy(q.scales)[:, None] * rows
    return weights.reshape(q.shape)


# --- entropy models ---------------------------------------------------------------------------------------


def histogram(symbols: np.ndarray, alphabet_size: int) -> np.ndarray:
    return np.bincount(symbols.reshape(-1), minlength=alphabet_size).astype(np.int64)


def empirical_entropy_bits(symbols: np.ndarray, alphabet_size: int) -> float:
    """N * H of the symbols' own histogram: the floor any model fitted to them can reach."""
    counts = histogram(symbols, alphabet_size)
    counts = counts[counts > 0].astype(np.float64)
    total = counts.sum()
    return float(-(counts * np.log2(counts / total)).sum()) if total else 0.0


def _param_frequencies(kind: str, center: float, spread: float, alphabet_size: int) -> np.ndarray:
    """Integer frequencies of a discretised Gaussian/Laplace over 0..alphabet-1 (tails folded into the ends)."""
    edges = np.arange(alphabet_size + 1, dtype=np.float64) - 0.5
    z = (edges - center) / max(spread, 1e-3)
    if kind == "gauss":
        cdf = 0.5 * torch.special.erfc(torch.from_numpy(-z / math.sqrt(2))).numpy()
    else:
        cdf = np.where(z < 0, 0.5 * np.exp(np.minimum(z, 0)), 1 - 0.5 * np.exp(-np.maximum(z, 0)))
    cdf[0], cdf[-1] = 0.0, 1.0
    probabilities = np.diff(cdf)
    return np.floor(probabilities * (1 << _PARAM_FREQ_BITS)) + 1


def _fit(kind: str, symbols: np.ndarray) -> tuple[float, float]:
    """Stored (as float32) centre and spread of a parametric model, in symbol units."""
    x = symbols.astype(np.float64)
    if kind == "gauss":
        center, spread = x.mean(), x.std()
    else:
        center = float(np.median(x))
        spread = float(np.abs(x - center).mean())
    return float(np.float32(center)), float(np.float32(max(spread, 1e-3)))


def _cross_entropy_bits(counts: np.ndarray, frequencies: np.ndarray) -> float:
    p = frequencies / frequencies.sum()
    used = counts > 0
    return float(-(counts[used] * np.log2(p[used])).sum())


@dataclass
class _Choice:
    quantized: Quantized
    model: str
    frequencies: np.ndarray
    params: tuple[float, float] = (0.0, 0.0)
    hist_k: int = 0
    model_bits: int = 0
    payload_bits: float = 0.0

    @property
    def total_bits(self) -> float:
        return self.quantized.side_bits + self.model_bits + self.payload_bits


def _best_model(q: Quantized, levels: int, models: tuple[str, ...]) -> _Choice:
    size = levels + 1
    counts = histogram(q.symbols, size)
    best: _Choice | None = None
    for model in models:
        if model == "hist":
            k = min(range(25), key=lambda k: _expgolomb_bits(counts, k))
            choice = _Choice(
                q,
                model,
                np.maximum(counts, 0).astype(np.float64),
                hist_k=k,
                model_bits=5 + _expgolomb_bits(counts, k),
            )
            choice.payload_bits = empirical_entropy_bits(q.symbols, size)
        elif model == "uniform":
            choice = _Choice(q, model, np.ones(size))
            choice.payload_bits = q.symbols.size * math.log2(size)
        else:
            params = _fit(model, q.symbols)
            freqs = _param_frequencies(model, *params, size)
            choice = _Choice(q, model, freqs, params=params, model_bits=64)
            choice.payload_bits = _cross_entropy_bits(counts, freqs)
        if best is None or choice.total_bits < best.total_bits:
            best = choice
    assert best is not None
    return best


def _categorical(frequencies: np.ndarray) -> Any:
    import constriction

    return constriction.stream.model.Categorical(frequencies.astype(np.float64), perfect=False)


# --- coding of symbol arrays ------------------------------------------------------------------------------


def _range_encode(parts: list[tuple[np.ndarray, np.ndarray]]) -> bytes:
    import constriction

    encoder = constriction.stream.queue.RangeEncoder()
    for symbols, frequencies in parts:
        if symbols.size:
            encoder.encode(symbols.astype(np.int32).reshape(-1), _categorical(frequencies))
    return encoder.get_compressed().astype("<u4").tobytes()


class _RangeReader:
    """Decodes symbol arrays in order; `finish` proves the payload is exactly their code and nothing else."""

    def __init__(self, data: bytes) -> None:
        import constriction

        if len(data) % 4:
            raise BitstreamError("stream is corrupt: range-coded payload is not a whole number of words")
        self._data = bytes(data)
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []
        self._decoder = constriction.stream.queue.RangeDecoder(
            np.frombuffer(data, dtype="<u4").astype(np.uint32)
        )

    def read(self, count: int, frequencies: np.ndarray) -> np.ndarray:
        if count == 0:
            return np.zeros(0, dtype=np.int32)
        try:
            symbols = np.asarray(self._decoder.decode(_categorical(frequencies), count), dtype=np.int32)
        except Exception as exc:  # constriction reports corrupt data with its own exception types
            raise BitstreamError(f"stream is corrupt: range decoding failed ({exc}); re-encode it") from None
        if symbols.min() < 0 or symbols.max() >= frequencies.size:
            raise BitstreamError("stream is corrupt: decoded symbols are out of range; re-encode it")
        self._parts.append((symbols, frequencies))
        return symbols

    def finish(self) -> None:
        """A range decoder reads any bytes as some symbols; re-encoding them must give the payload back."""
        if _range_encode(self._parts) != self._data:
            raise BitstreamError(
                "stream is corrupt: the range-coded payload does not match its symbols; re-encode it"
            )


def _check_alphabet(alphabet_size: int) -> None:
    if not 2 <= alphabet_size <= MAX_LEVELS + 1:
        raise BitstreamError(f"alphabet of {alphabet_size} symbols is outside 2..{MAX_LEVELS + 1}")


def encode_symbols(symbols: np.ndarray, alphabet_size: int, probabilities: np.ndarray | None = None) -> bytes:
    """Range code integer symbols in [0, alphabet_size).

    With `probabilities` (known to the decoder, e.g. fixed mask densities) only the payload is written;
    without, the empirical histogram goes first (Exp-Golomb coded) and is part of the returned bytes.
    """
    _check_alphabet(alphabet_size)
    symbols = np.asarray(symbols).reshape(-1)
    if symbols.size and (symbols.min() < 0 or symbols.max() >= alphabet_size):
        raise ValueError(f"symbols must lie in [0, {alphabet_size})")
    prefix = b""
    if probabilities is None:
        counts = histogram(symbols, alphabet_size)
        k = min(range(25), key=lambda k: _expgolomb_bits(counts, k))
        writer = BitWriter()
        writer.write(k, 5)
        for c in counts:
            writer.write_expgolomb(int(c), k)
        prefix = writer.getvalue()
        frequencies = counts.astype(np.float64)
    else:
        frequencies = np.asarray(probabilities, dtype=np.float64)
        if frequencies.shape != (alphabet_size,):
            raise ValueError(f"probabilities must have shape ({alphabet_size},)")
    return prefix + _range_encode([(symbols, frequencies)])


def decode_symbols(
    data: bytes, count: int, alphabet_size: int, probabilities: np.ndarray | None = None
) -> np.ndarray:
    """Inverse of `encode_symbols`; `count` comes from the stream's structure, never from the payload."""
    _check_alphabet(alphabet_size)
    if not 0 <= count <= MAX_SYMBOLS:
        raise BitstreamError(f"stream is corrupt: {count} symbols is out of range")
    if probabilities is None:
        reader = BitReader(data)
        k = reader.read(5)
        counts = np.array([reader.read_expgolomb(k, count) for _ in range(alphabet_size)], dtype=np.int64)
        if counts.sum() != count:
            raise BitstreamError("stream is corrupt: histogram does not add up to the symbol count")
        frequencies = counts.astype(np.float64)
        used = (reader.pos + 7) // 8
        if reader.pos % 8 and data[used - 1] & ((1 << (8 - reader.pos % 8)) - 1):
            raise BitstreamError("stream is corrupt: histogram padding is not zero; re-encode it")
        data = data[used:]
    else:
        frequencies = np.asarray(probabilities, dtype=np.float64)
        if frequencies.shape != (alphabet_size,):
            raise ValueError(f"probabilities must have shape ({alphabet_size},)")
    payload = _RangeReader(data)
    symbols = payload.read(count, frequencies)
    payload.finish()
    return symbols


# --- coding of named tensors ------------------------------------------------------------------------------


@dataclass
class EncodedTensors:
    """Sections for the container, the header fields, the weights the decoder will see, and size facts."""

    sections: dict[str, bytes]
    meta: dict[str, Any]
    dequantized: dict[str, torch.Tensor]
    stats: dict[str, Any] = field(default_factory=dict)


def _choose(tensor: torch.Tensor, levels: int, axis: str, models: tuple[str, ...]) -> _Choice:
    options = []
    if axis in ("auto", "tensor") or tensor.dim() < 2:
        options.append(quantize(tensor, levels, per_channel=False))
    if axis in ("auto", "channel") and tensor.dim() >= 2:
        options.append(quantize(tensor, levels, per_channel=True))
    return min((_best_model(q, levels, models) for q in options), key=lambda c: c.total_bits)


def _write_side(writer: BitWriter, choice: _Choice) -> None:
    q = choice.quantized
    writer.write(int(q.per_channel), 1)
    writer.write(int(q.half), 1)
    writer.write(MODELS.index(choice.model), 2)
    dtype, width = (np.uint16, 16) if q.half else (np.uint32, 32)
    store = np.float16 if q.half else np.float32
    for array in (q.offsets, q.scales):
        for word in array.astype(store).view(dtype):
            writer.write(int(word), width)
    if choice.model == "hist":
        writer.write(choice.hist_k, 5)
        for c in choice.frequencies.astype(np.int64):
            writer.write_expgolomb(int(c), choice.hist_k)
    elif choice.model in ("gauss", "laplace"):
        for value in choice.params:
            writer.write(int(np.array(value, dtype=np.float32).view(np.uint32)), 32)


FLAG_BITS = 4  # per tensor: axis, precision, model


def _choices(
    named: dict[str, torch.Tensor], levels: int, axis: str, models: tuple[str, ...]
) -> list[_Choice]:
    if not 1 <= levels <= MAX_LEVELS:
        raise ValueError(f"levels must be in 1..{MAX_LEVELS}, got {levels}")
    if axis not in AXES:
        raise ValueError(f"axis must be one of {AXES}, got '{axis}'")
    return [_choose(tensor, levels, axis, models) for tensor in named.values()]


def estimate_bits(
    named: dict[str, torch.Tensor], levels: int, axis: str = "auto", models: tuple[str, ...] = MODELS
) -> float:
    """Size of `encode_tensors`' two sections in bits, to within the coder's final word (<= 64 bits)."""
    return sum(c.total_bits + FLAG_BITS for c in _choices(named, levels, axis, models))


def fit_levels(
    named: dict[str, torch.Tensor],
    budget_bits: float,
    axis: str = "auto",
    models: tuple[str, ...] = MODELS,
    lowest: int = 15,
    highest: int = 4095,
) -> int:
    """The most quantization levels in [lowest, highest] whose coded size stays within `budget_bits`.

    Rate control: the coded size grows monotonically with the level count (about log2 of it per weight),
    so a bisection finds the finest quantization that fits a planned size.
    """
    lo, hi = lowest, min(highest, MAX_LEVELS)
    if estimate_bits(named, hi, axis, models) <= budget_bits:
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if estimate_bits(named, mid, axis, models) <= budget_bits else (lo, mid)
    return lo


def encode_tensors(
    named: dict[str, torch.Tensor],
    bits: int = 8,
    axis: str = "auto",
    models: tuple[str, ...] = MODELS,
    levels: int | None = None,
) -> EncodedTensors:
    """Quantize and entropy-code tensors (in the dict's order, which the decoder must repeat).

    `levels` (default ``2^bits - 1``, NeRV's quantization) sets the symbols 0..levels of every tensor.
    Sections: ``weights`` (the range-coded symbols of all tensors in one stream) and ``side`` (per tensor:
    axis, precision and model flags, offsets and scales, model parameters or histogram).
    """
    levels = levels if levels is not None else (1 << bits) - 1
    writer = BitWriter()
    parts, dequantized, per_tensor = [], {}, {}
    entropy = reference = 0.0
    for name, choice in zip(named, _choices(named, levels, axis, models), strict=True):
        q = choice.quantized
        _write_side(writer, choice)
        parts.append((q.symbols, choice.frequencies))
        dequantized[name] = dequantize(q)
        h = empirical_entropy_bits(q.symbols, levels + 1)
        counts = histogram(q.symbols, levels + 1)
        table = 5 + min(_expgolomb_bits(counts, k) for k in range(25))
        entropy += h
        reference += h + q.side_bits + table + FLAG_BITS
        per_tensor[name] = {
            "count": int(q.symbols.size),
            "axis": "channel" if q.per_channel else "tensor",
            "side": "float16" if q.half else "float32",
            "model": choice.model,
            "entropy_bits": round(h, 1),
            "side_bits": int(q.side_bits + choice.model_bits + FLAG_BITS),
        }
    side = writer.getvalue()
    weights = _range_encode(parts)
    coded = 8 * (len(weights) + len(side))
    stats = {
        "levels": levels,
        "entropy_bits": round(entropy, 1),
        "payload_bits": 8 * len(weights),
        "side_bits": 8 * len(side),
        # What coding every tensor with its own stored histogram costs at the entropy bound; the coder
        # picks a cheaper model where one exists, so the ratio is at most 1 plus the coder's last word.
        "histogram_reference_bits": round(reference, 1),
        "coded_over_reference": coded / max(reference, 1.0),
        "tensors": per_tensor,
    }
    return EncodedTensors({"weights": weights, "side": side}, {"levels": levels}, dequantized, stats)


def _read_floats(reader: BitReader, count: int, half: bool) -> np.ndarray:
    width, dtype, store = (16, np.uint16, np.float16) if half else (32, np.uint32, np.float32)
    words = np.array([reader.read(width) for _ in range(count)], dtype=dtype)
    values = words.view(store).astype(np.float32)
    if not np.all(np.isfinite(values)):
        raise BitstreamError("stream is corrupt: a quantization offset or scale is not finite; re-encode it")
    return values


def decode_tensors(
    sections: dict[str, bytes], meta: dict[str, Any], shapes: dict[str, tuple[int, ...]]
) -> dict[str, torch.Tensor]:
    """Rebuild the dequantized tensors; `shapes` (name -> shape, in encoding order) comes from the architecture.

    Every byte must be accounted for: the side information is read to its last field (only zero padding
    may follow), and the payload must be exactly the range code of the symbols decoded from it.
    """
    levels = meta.get("levels") if isinstance(meta, dict) else None
    if type(levels) is not int or not 1 <= levels <= MAX_LEVELS:
        raise BitstreamError(
            f"stream header has an invalid quantization level count {levels!r}; re-encode it"
        )
    if sum(math.prod(s) for s in shapes.values()) > MAX_SYMBOLS:
        raise BitstreamError("stream header describes more weights than this decoder accepts; re-encode it")
    size = levels + 1
    try:
        reader = BitReader(sections["side"])
        payload = _RangeReader(sections["weights"])
    except KeyError as exc:
        raise BitstreamError(f"stream lacks section {exc}; re-encode it") from None
    layout = []
    for name, shape in shapes.items():
        count = math.prod(shape)
        per_channel, half = bool(reader.read(1)), bool(reader.read(1))
        model = MODELS[reader.read(2)]
        rows = shape[0] if per_channel and len(shape) > 1 else 1
        offsets, scales = _read_floats(reader, rows, half), _read_floats(reader, rows, half)
        if model == "hist":
            k = reader.read(5)
            counts = np.array([reader.read_expgolomb(k, count) for _ in range(size)], dtype=np.int64)
            if counts.sum() != count:
                raise BitstreamError(f"stream is corrupt: histogram of '{name}' does not match its size")
            frequencies = counts.astype(np.float64)
        elif model == "uniform":
            frequencies = np.ones(size)
        else:
            center, spread = _read_floats(reader, 2, half=False)
            frequencies = _param_frequencies(model, float(center), float(spread), size)
        layout.append((name, tuple(shape), per_channel, half, offsets, scales, frequencies))
    reader.finish()
    out: dict[str, torch.Tensor] = {}
    for name, shape, per_channel, half, offsets, scales, frequencies in layout:
        symbols = payload.read(math.prod(shape), frequencies)
        out[name] = dequantize(Quantized(symbols, shape, per_channel, half, offsets, scales))
    payload.finish()
    return out
