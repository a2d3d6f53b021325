"""`synmed run`: a paper's stages (ingest, generator, sample, ..., report) as one resumable run."""
