"""nerv-bench: which neural video representation reconstructs a video best at the same number of bits."""

import os

# Idle OpenMP threads sleep instead of spinning: with more busy threads than cores (parallel jobs, a
# shared machine) spinning made small training steps ~50x slower. Set before anything imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
