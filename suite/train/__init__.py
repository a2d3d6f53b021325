"""Training components shared by every Accelerate loop: run state, sampler, EMA, monitors."""
