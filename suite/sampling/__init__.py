"""Sampling synthetic images at scale: samplers, the per-index plan, the Ray Data job."""
