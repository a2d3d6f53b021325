"""Evaluation: generator quality (Fréchet distance), classification, segmentation."""
