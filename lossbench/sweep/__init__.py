"""Sweeps: YAML config -> RunSpecs -> runs (in process, worker pool or Dask) -> records
and tables in a results directory (store.py owns that directory)."""
