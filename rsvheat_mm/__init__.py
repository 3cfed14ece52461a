"""rsvheat_mm: RS-vHeat for the OpenMMLab toolboxes.

Importing the package (e.g. through ``custom_imports``) checks the
mmengine/mmcv/torch versions, registers the toolbox-free components
(backbone, heat conduction operator, necks, losses, transforms, metrics),
arranges for the mmpretrain/mmseg/mmdet/mmrotate-specific ones to be
registered when that toolbox is imported -- it never imports the toolboxes
itself -- and applies the process-wide compatibility patches listed in
:mod:`rsvheat_mm.runtime_compat` (each documented and switchable, e.g.
``RSVHEAT_COMPAT=none``).
"""
import importlib.util
import re
import sys

from .version import __version__

# Supported ranges of the two OpenMMLab lines rsvheat_mm is tested with
# (requirements/mminstall.txt and requirements/mminstall-onedl.txt). The
# import names are the same on both; only the distributions differ.
SUPPORTED_STACKS = {
    'official OpenMMLab': {
        'mmengine': ('mmengine', '0.8.0', '1.0.0'),
        'mmcv': ('mmcv', '2.0.0', '2.2.0'),
    },
    'OneDL': {
        'mmengine': ('onedl-mmengine', '0.10.8', '1.0.0'),
        'mmcv': ('onedl-mmcv', '2.3.0', '2.4.0'),
    },
}
# torch.library.custom_op and selective activation checkpointing.
TORCH_MIN = '2.4.0'
# `__version__ = '2.0.1'` (official) or `__version__ = version('onedl-mmcv')` (OneDL).
_VERSION_RE = re.compile(r'''^__version__\s*=\s*(?:version\(\s*)?['"]([^'"]+)['"](\))?''', re.M)


def installed_version(module):
    """Version of an installed top-level package, or None if it is absent.

    Prefers the module's ``__version__`` (the same on every distribution of
    it: ``mmcv`` or ``onedl-mmcv``): the imported module's if it is imported,
    else read from its ``version.py`` without importing it; distribution
    metadata only as a fallback.
    """
    mod = sys.modules.get(module)
    if getattr(mod, '__version__', None):
        return str(mod.__version__)
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return None
    from importlib.metadata import PackageNotFoundError, version
    for path in spec.submodule_search_locations or ():
        try:
            with open(f'{path}/version.py', encoding='utf-8') as f:
                m = _VERSION_RE.search(f.read())
        except OSError:
            continue
        if m and not m.group(2):
            return m.group(1)
        if m:  # the version of the distribution named in version.py
            try:
                return version(m.group(1))
            except PackageNotFoundError:
                pass
    for stack in SUPPORTED_STACKS.values():
        try:
            return version(stack[module][0])
        except PackageNotFoundError:
            continue
    return None


def _ranges(module):
    return ' or '.join(f'{module}>={lo},<{hi} ({name} line: {dist})'
                       for name, stack in SUPPORTED_STACKS.items()
                       for dist, lo, hi in [stack[module]])


_HOW_TO_INSTALL = (
    'Run `make install` in the rsvheat_mm repository for the pinned official set '
    '(requirements/mminstall.txt) or `RSVHEAT_STACK=onedl make install` for the OneDL set '
    '(requirements/mminstall-onedl.txt); see the README, "Installation".')


def _check_versions(found=None):
    """Raise ImportError unless mmengine, mmcv and torch are supported.

    Args:
        found (dict, optional): ``module -> version`` overriding what is
            installed (for tests); a ``None`` version means not installed.
    """
    from packaging.version import parse
    found = dict(found or {})
    for module in ('mmengine', 'mmcv'):
        ver = found[module] if module in found else installed_version(module)
        if ver is None:
            raise ImportError(f'rsvheat_mm needs {module}, which is not installed: '
                              f'{_ranges(module)}. {_HOW_TO_INSTALL}')
        if not any(parse(lo) <= parse(ver) < parse(hi)
                   for stack in SUPPORTED_STACKS.values()
                   for _, lo, hi in [stack[module]]):
            raise ImportError(f'rsvheat_mm supports {_ranges(module)}, but {module}=={ver} '
                              f'is installed. {_HOW_TO_INSTALL}')
    if 'torch' in found:
        torch_ver = found['torch']
    else:
        import torch
        torch_ver = torch.__version__
    if parse(torch_ver.split('+')[0]) < parse(TORCH_MIN):
        raise ImportError(f'rsvheat_mm needs torch>={TORCH_MIN}, but torch=='
                          f'{torch_ver} is installed (set TORCH_SPEC for '
                          '`make install`, see the README).')


_check_versions()

from . import datasets, engine, evaluation, models  # noqa: E402,F401
from . import runtime_compat  # noqa: E402
from .utils import plugins as _plugins  # noqa: E402

runtime_compat.apply()
# Components for toolboxes imported before rsvheat_mm; the rest follow their
# toolbox's import (toolbox_import_hook) or, with that patch off, now.
_plugins.register_imported_toolboxes()
if not runtime_compat.is_applied('toolbox_import_hook'):
    _plugins.import_all_plugins()

__all__ = ['__version__', 'SUPPORTED_STACKS', 'installed_version']
