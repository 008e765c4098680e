"""The engine: numba kernels over NamedTuples of arrays. Imports numpy and numba only."""
