"""Hydra config tree (YAML), shipped as package data so installed wheels find it too."""
