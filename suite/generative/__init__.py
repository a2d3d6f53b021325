"""Generators: one file per method, a config dataclass each, and a registry line each."""
