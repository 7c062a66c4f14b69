"""Time-series storage: chunk encoding, ingest payload parsing, merging and downsampling."""
