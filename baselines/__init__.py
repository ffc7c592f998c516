"""Baseline adapters shipped with mmbench (registered on import by mmbench.registry)."""
