from .checkpoint import (UnsafeCheckpointError, install_safe_checkpoint_loader,
                         load_checkpoint_safely)
from .compat import patch_collections_abc_aliases
from .fileio import atomic_write, install_atomic_local_backend
from .tiling import sliding_windows
from .plugins import import_all_plugins, install_plugin_hooks

__all__ = [
    'UnsafeCheckpointError', 'install_safe_checkpoint_loader',
    'load_checkpoint_safely', 'patch_collections_abc_aliases',
    'import_all_plugins', 'install_plugin_hooks', 'atomic_write',
    'install_atomic_local_backend', 'sliding_windows'
]
