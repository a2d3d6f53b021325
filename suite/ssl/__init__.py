"""Self-supervised pretraining (DINO, SimCLR) on shard sets: `synmed pretrain`."""
