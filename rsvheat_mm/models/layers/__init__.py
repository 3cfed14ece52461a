"""Building blocks of RS-vHeat: the heat conduction maths (``heat_conduction``),
the HCO layer of a block (``hco_layer``), the stem/MLP/block
(``rsvheat_block``) and the block's fused training function
(``block_autograd``), fused CPU inference kernels (``fused_ops``), grid
resizing (``embedding``), the bounded cache for per-resolution tensors
(``resolution_cache``) and giving host memory back (``host_memory``)."""
from .embedding import INTERP_MODES, resize_embedding
from .hco_layer import HeatConduction2d
from .heat_conduction import (HEAT_CACHE, axis_impl, clear_heat_caches, dct2d, dct_matrix,
                              heat_conduction, heat_decay, heat_frequencies, idct2d,
                              pocketfft_dct)
from .resolution_cache import ResolutionCache
from .rsvheat_block import RSVHeatBlock, RSVHeatDownsample, RSVHeatMlp, RSVHeatStem

__all__ = [
    'axis_impl', 'clear_heat_caches', 'dct2d', 'dct_matrix', 'heat_conduction',
    'heat_decay', 'heat_frequencies', 'idct2d', 'pocketfft_dct', 'HEAT_CACHE',
    'HeatConduction2d', 'ResolutionCache', 'resize_embedding', 'INTERP_MODES', 'RSVHeatBlock',
    'RSVHeatDownsample', 'RSVHeatMlp', 'RSVHeatStem'
]
