"""nerv-bench: which neural video representation reconstructs a video best at the same number of bits."""

__version__ = "0.1.0"
