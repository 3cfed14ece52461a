from .checkpoint import UnsafeCheckpointError, load_checkpoint_safely
from .fileio import AtomicLocalBackend, atomic_write
from .tiling import sliding_windows

__all__ = [
    'UnsafeCheckpointError', 'load_checkpoint_safely', 'atomic_write',
    'AtomicLocalBackend', 'sliding_windows'
]
