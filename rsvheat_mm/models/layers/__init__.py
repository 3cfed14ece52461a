from .heat_conduction import (clear_heat_caches, dct2d, dct_matrix,
                              heat_conduction, heat_decay, heat_frequencies,
                              idct2d)

__all__ = [
    'clear_heat_caches', 'dct2d', 'dct_matrix', 'heat_conduction',
    'heat_decay', 'heat_frequencies', 'idct2d'
]
