"""Networks that render frames: NeRV (frame index -> frame) and HNeRV (frame -> embedding -> frame)."""
