"""The NeRV family's shared library: backbones, masks, coding, training, the stream header, the adapter base.

The method adapters beside it (`methods/nerv_dense.py`, ...) hold only what makes each method itself.
"""
