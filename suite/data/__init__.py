"""The HDF5 shard store (the one contract between stages) and dataset ingest."""
