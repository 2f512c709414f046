"""Sequence manifests (YAML), shipped as package data so every kind of install finds them."""
