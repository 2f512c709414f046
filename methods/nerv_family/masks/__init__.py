"""Masks over a network's weights: hierarchical supermasks on random weights, and pruning's 0/1 masks.

Every weight layer holds a fixed random weight `w` and bias (regenerated from a seed, never stored) and a
trained score `s` per weight. N nested masks keep the top k_1 > ... > k_N fraction of |s| in each layer,
recomputed at every step; the level ``lambda = sum_n mask_n`` in {0..N} of a weight sets its value
``W = w * sum_n alpha_n mask_n = w * (alpha_1 + ... + alpha_lambda)``. Scores get the straight-through
gradient of every mask they pass.

Where the scale lives: the buffer ``weight`` is only the random direction, with unit second moment
(``sign(w0)`` = +-1 by default, or ``w0 ~ N(0, 1)``). A layer's scale constant ``c`` lives in its alphas:
either Okoshi et al.'s ``sqrt(2 / (fan_in k_1))`` or the variance-preserving ``sqrt(2 / fan_in) /
sqrt(E[lambda^2])``. Fixed scales (Okoshi et al.'s multicoated supermasks, the baseline): ``alpha_n = c``
for every level, a constant buffer. Learned scales (the paper): ``alpha_n = c * theta_n`` ("direct") or
``c * exp(theta_n)`` ("log") with trained ``theta`` starting at the fixed model, so the alpha learning rate
is relative to ``c`` and means the same in every layer.

The level distribution p = (1 - k_1, k_1 - k_2, ..., k_N) is known before training, so the coded mask costs
H(p) bits per weight (range coded with those frequencies) and a network is sized for a rate exactly.

Pruning's masks (`pruning`) are coded by `sparse_coding`: the 0/1 positions and the surviving weights, the
stream nerv-pruned and hinerv share.
"""
