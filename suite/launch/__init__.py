"""Running stages on clusters: job environment, preemption, Submitit, accelerate launch per node."""
