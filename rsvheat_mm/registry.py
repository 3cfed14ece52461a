"""Registries of rsvheat_mm.

Every public component is registered by a single decorator:

* in the ``rsvheat_mm`` child registry (scope ``rsvheat_mm``, with
  ``locations``), so ``type='rsvheat_mm.RSVHeat'`` resolves from any
  OpenMMLab config without ``custom_imports`` -- mmengine imports
  ``rsvheat_mm.registry`` for the scope and then the locations;
* and, by the ``root_registry`` patch of :mod:`rsvheat_mm.runtime_compat`
  (on by default, switchable), in MMEngine's root registry through its public
  ``register_module``, so that after ``custom_imports=dict(imports=['rsvheat_mm'])``
  a bare ``type='RSVHeat'`` resolves under any default scope (mmpretrain,
  mmseg, mmdet, mmrotate): each toolbox registry falls back to its root
  ancestor. Class names are therefore distinctive (``RSVHeat*``, ``CD*``, ...).
"""
from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import INFERENCERS as MMENGINE_INFERENCERS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import TASK_UTILS as MMENGINE_TASK_UTILS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import Registry

from rsvheat_mm import runtime_compat

# Everything registered by the package: toolbox-free modules plus the
# toolbox-specific ones whose toolbox is installed (see utils/plugins.py).
_LOCATIONS = ['rsvheat_mm.all_components']


class PluginRegistry(Registry):
    """A child registry that reports each registration to ``runtime_compat``.

    With the ``root_registry`` patch applied, one ``@MODELS.register_module()``
    makes a class reachable both as ``rsvheat_mm.Name`` and as a bare ``Name``
    from every toolbox scope; without it, only as ``rsvheat_mm.Name``.
    """

    def register_module(self, name=None, force=False, module=None):
        if module is None:  # used as a decorator
            def _register(cls):
                self.register_module(name=name, force=force, module=cls)
                return cls
            return _register
        super().register_module(name=name, force=force, module=module)
        runtime_compat.registered(self, module, name)
        return module


CHILD_REGISTRIES = []


def _child(name, parent):
    registry = PluginRegistry(
        name, parent=parent, scope='rsvheat_mm', locations=_LOCATIONS)
    CHILD_REGISTRIES.append(registry)
    return registry


MODELS = _child('model', MMENGINE_MODELS)
MODEL_WRAPPERS = _child('model_wrapper', MMENGINE_MODEL_WRAPPERS)
DATASETS = _child('dataset', MMENGINE_DATASETS)
DATA_SAMPLERS = _child('data sampler', MMENGINE_DATA_SAMPLERS)
TRANSFORMS = _child('transform', MMENGINE_TRANSFORMS)
METRICS = _child('metric', MMENGINE_METRICS)
EVALUATOR = _child('evaluator', MMENGINE_EVALUATOR)
HOOKS = _child('hook', MMENGINE_HOOKS)
LOOPS = _child('loop', MMENGINE_LOOPS)
TASK_UTILS = _child('task util', MMENGINE_TASK_UTILS)
OPTIM_WRAPPER_CONSTRUCTORS = _child('optimizer wrapper constructor',
                                    MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS)
OPTIM_WRAPPERS = _child('optim_wrapper', MMENGINE_OPTIM_WRAPPERS)
PARAM_SCHEDULERS = _child('parameter scheduler', MMENGINE_PARAM_SCHEDULERS)
VISUALIZERS = _child('visualizer', MMENGINE_VISUALIZERS)
VISBACKENDS = _child('vis_backend', MMENGINE_VISBACKENDS)
INFERENCERS = _child('inferencer', MMENGINE_INFERENCERS)
