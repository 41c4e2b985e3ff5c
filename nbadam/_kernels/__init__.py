"""Update rules as compiled kernels: :mod:`.cpu` (Numba) and :mod:`.cuda`."""
