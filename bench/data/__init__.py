"""The data layer: manifests -> sequences of uint8 RGB frames -> the budget's clip.

Readers cover raw yuv420p, videos (PyAV), image folders and single images; colour conversion is
ffmpeg's own; `bench.data.fetch` downloads UVG; `bench.data.catalog` lists what is available.
"""

from bench.data.sequences import Sequence, data_cache_dir, load_sequence, parse_size, prepare_clip

__all__ = ["Sequence", "data_cache_dir", "load_sequence", "parse_size", "prepare_clip"]
