"""Registration of the toolbox-specific parts of rsvheat_mm.

``import rsvheat_mm`` must stay light and must not import mmpretrain, mmseg,
mmdet or mmrotate (a user of one toolbox should not pay for, or be broken by,
the other three). The toolbox-free components (backbone, operator, necks,
losses, transforms, metrics) are registered at once; the modules listed here
subclass a toolbox's classes and are imported right after that toolbox itself
is first imported -- which is exactly when a config with that default scope
starts building. The trigger is the ``toolbox_import_hook`` of
:mod:`rsvheat_mm.runtime_compat`; without it, :func:`import_all_plugins`
imports every installed toolbox at once.
"""
import importlib
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
        'rsvheat_mm.models.data_preprocessors.multiband_seg',
        'rsvheat_mm.models.segmentors.multimodal_encoder_decoder',
        # change detection (bi-temporal)
        'rsvheat_mm.datasets.bitemporal_cd',
        'rsvheat_mm.datasets.transforms.bitemporal',
        'rsvheat_mm.models.data_preprocessors.bitemporal_cd',
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


def registered_toolboxes():
    """The toolboxes whose rsvheat_mm components are registered."""
    return set(_done)


def register_toolbox_components(toolbox):
    """Import rsvheat_mm's modules for ``toolbox`` (already imported). Once."""
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


def register_imported_toolboxes():
    """Register the components of every toolbox imported so far."""
    import sys
    for toolbox in TOOLBOX_PLUGINS:
        if sys.modules.get(toolbox) is not None:
            register_toolbox_components(toolbox)


def import_all_plugins():
    """Import every installed toolbox and register rsvheat_mm's parts for it."""
    from rsvheat_mm.runtime_compat import _spec, before_toolbox_import
    for toolbox in TOOLBOX_PLUGINS:
        if _spec(toolbox) is not None:
            before_toolbox_import(toolbox)
            importlib.import_module(toolbox)
            register_toolbox_components(toolbox)
