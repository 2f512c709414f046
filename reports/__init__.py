"""HTML reports: rate-distortion curves, BD-rates, FLIP-map galleries."""
