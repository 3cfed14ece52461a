"""Lazy registration of the toolbox-specific parts of rsvheat_mm.

``import rsvheat_mm`` must stay light and must not import mmpretrain, mmseg,
mmdet or mmrotate (a user of one toolbox should not pay for, or be broken by,
the other three). The toolbox-free components (backbone, operator, necks,
losses, transforms, metrics) are registered at once; the modules that
subclass a toolbox's classes are imported right after that toolbox itself
is first imported -- which is exactly when a config with that default scope
starts building. A ``sys.meta_path`` finder wraps the toolbox's loader to run
this post-import step; if the toolbox is already imported, it runs at once.
"""
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
import traceback
import warnings

# toolbox package -> rsvheat_mm modules that need it.
TOOLBOX_PLUGINS = {
    'mmpretrain': [
        'rsvheat_mm.models.selfsup.data_preprocessor',
        'rsvheat_mm.models.selfsup.rsvheat_pretrain',
    ],
    'mmseg': [
        'rsvheat_mm.datasets.air_polsar_seg',
        'rsvheat_mm.datasets.whu_opt_sar',
        'rsvheat_mm.evaluation.seg_metric',
        'rsvheat_mm.models.segmentors.multimodal_encoder_decoder',
        # change detection (bi-temporal)
        'rsvheat_mm.datasets.bitemporal_cd',
        'rsvheat_mm.datasets.transforms.bitemporal',
        'rsvheat_mm.models.cd_data_preprocessor',
        'rsvheat_mm.models.segmentors.cd_siamese',
        'rsvheat_mm.evaluation.cd_metric',
    ],
    'mmdet': [
        # detection: DIOR (horizontal), SAR-AIRcraft-1.0
        'rsvheat_mm.datasets.rs_det_datasets',
    ],
    'mmrotate': [
        # rotated detection: FAIR1M-2.0, full-scene (merged patch) metric
        'rsvheat_mm.datasets.fair1m',
        'rsvheat_mm.evaluation.merged_dota_metric',
    ],
}

_lock = threading.RLock()
_done = set()


def _import_plugins(toolbox):
    with _lock:
        if toolbox in _done:
            return
        _done.add(toolbox)
    for name in TOOLBOX_PLUGINS[toolbox]:
        try:
            importlib.import_module(name)
        except Exception:  # keep the user's `import <toolbox>` working
            warnings.warn(
                f'rsvheat_mm: could not register its {toolbox} components '
                f'from {name!r}; configs that use them will fail to build.\n'
                + traceback.format_exc())


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Runs :func:`_import_plugins` after a toolbox package has executed."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in TOOLBOX_PLUGINS or fullname in _done:
            return None
        # Ask the remaining finders for the real spec.
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, 'exec_module'):
            return spec
        exec_module = loader.exec_module

        def exec_and_register(module, _exec=exec_module, _name=fullname):
            _exec(module)
            # The toolbox package is complete here; importing our modules
            # (which import its submodules) cannot see it half-initialised.
            sys.modules[_name] = module
            _import_plugins(_name)

        loader.exec_module = exec_and_register
        return spec


_finder = _PostImportFinder()


def install_plugin_hooks():
    """Register toolbox components now or as soon as the toolbox loads."""
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
    for toolbox in TOOLBOX_PLUGINS:
        if toolbox in sys.modules:
            _import_plugins(toolbox)


def import_all_plugins():
    """Import every toolbox-specific module whose toolbox is installed."""
    for toolbox in TOOLBOX_PLUGINS:
        if importlib.util.find_spec(toolbox) is not None:
            importlib.import_module(toolbox)
            _import_plugins(toolbox)
