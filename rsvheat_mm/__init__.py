"""rsvheat_mm: RS-vHeat for the OpenMMLab toolboxes.

Importing the package (e.g. through ``custom_imports``) checks the
mmengine/mmcv versions, registers the toolbox-free components (backbone,
heat conduction operator, necks, losses, transforms, metrics), and arranges
for the mmpretrain/mmseg/mmdet/mmrotate-specific ones to be registered when
that toolbox is imported -- it never imports the toolboxes itself.
"""
import warnings

from .version import __version__

# mmengine 0.10.7 imports pkg_resources, which setuptools deprecates loudly on
# every start; the pinned setuptools<81 still provides it.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated',
                        category=UserWarning)

# Supported ranges (the pinned set is in requirements/mminstall.txt).
MMENGINE_MIN, MMENGINE_MAX = '0.8.0', '1.0.0'
MMCV_MIN, MMCV_MAX = '2.0.0', '2.2.0'
# torch.library.custom_op and selective activation checkpointing.
TORCH_MIN = '2.4.0'


def _check_versions():
    from importlib.metadata import PackageNotFoundError, version

    from packaging.version import parse
    for pkg, lo, hi in (('mmengine', MMENGINE_MIN, MMENGINE_MAX),
                        ('mmcv', MMCV_MIN, MMCV_MAX)):
        try:
            found = version(pkg)
        except PackageNotFoundError:
            raise ImportError(
                f'rsvheat_mm needs {pkg}>={lo},<{hi}, which is not installed. '
                'Run `make install` in the rsvheat_mm repository (it builds '
                'the pinned OpenMMLab set), or see requirements/mminstall.txt.'
            ) from None
        if not parse(lo) <= parse(found) < parse(hi):
            raise ImportError(
                f'rsvheat_mm needs {pkg}>={lo},<{hi}, but {pkg}=={found} is '
                'installed. mmrotate 1.0.0rc1 caps the OpenMMLab set at '
                'mmcv 2.0.x/mmdet 3.1.0; see requirements/mminstall.txt or run '
                '`make install`.')
    import torch
    if parse(torch.__version__.split('+')[0]) < parse(TORCH_MIN):
        raise ImportError(f'rsvheat_mm needs torch>={TORCH_MIN}, but torch=='
                          f'{torch.__version__} is installed (set TORCH_SPEC for '
                          '`make install`, see the README).')


_check_versions()

from .utils import (install_atomic_local_backend,  # noqa: E402
                    install_plugin_hooks, install_safe_checkpoint_loader,
                    patch_collections_abc_aliases)

patch_collections_abc_aliases()
install_safe_checkpoint_loader()
install_atomic_local_backend()

from . import datasets, engine, evaluation, models  # noqa: E402,F401

install_plugin_hooks()

__all__ = ['__version__']
