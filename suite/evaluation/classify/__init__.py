"""Classification evaluation: linear probe, kNN, fine-tuning, shallow heads, self-validation."""
