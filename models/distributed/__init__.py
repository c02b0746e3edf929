"""The fit on a Dask cluster: X as row blocks on the workers (docs/scale-out.md). Importing this package imports no
Dask: the modules below do."""

DEFAULT_BLOCK_NNZ = 4_000_000  # interactions per row block (~32 MB of CSR): many blocks per worker, each cheap to move
