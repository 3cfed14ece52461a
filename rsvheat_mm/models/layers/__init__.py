from .heat_conduction import (axis_impl, clear_heat_caches, dct2d, dct_matrix,
                              heat_conduction, heat_decay, heat_frequencies,
                              idct2d, pocketfft_dct)

__all__ = [
    'axis_impl', 'clear_heat_caches', 'dct2d', 'dct_matrix', 'heat_conduction',
    'heat_decay', 'heat_frequencies', 'idct2d', 'pocketfft_dct'
]
