"""Which config, weights and task an inferencer runs.

A model is named by a config file, a ``Config``/dict, a model name or alias
of ``model-index.yml``, or nothing but a checkpoint that stores its config
(as mmengine's Runner saves it). The task follows from the config's
``default_scope``.
"""
import copy
import os.path as osp
import re
from typing import Iterator, List, Optional, Tuple

from mmengine.config import Config, ConfigDict
from mmengine.fileio import load

__all__ = ['TASKS', 'task_of_config', 'resolve_config', 'list_models', 'repo_or_mim_dir']

TASKS = ('classification', 'segmentation', 'change_detection', 'detection',
         'rotated_detection')
_SCOPE_TASK = {'mmpretrain': 'classification', 'mmseg': 'segmentation',
               'mmdet': 'detection', 'mmrotate': 'rotated_detection'}


def _short(type_name) -> str:
    return type_name.split('.')[-1] if isinstance(type_name, str) else type_name.__name__


def task_of_config(cfg) -> str:
    """The task of a config: one of :data:`TASKS`.

    From ``default_scope`` (mmpretrain, mmseg, mmdet, mmrotate); mmseg models
    with a ``fusion_neck`` (siamese, bi-temporal) are change detectors.
    """
    scope = cfg.get('default_scope')
    model = cfg.get('model') or {}
    if scope not in _SCOPE_TASK:
        raise ValueError(f'cannot tell the task of a config with default_scope={scope!r}; '
                         f'RSVHeatInferencer supports {sorted(_SCOPE_TASK)}')
    mtype = _short(model.get('type', ''))
    if scope == 'mmpretrain' and mtype != 'ImageClassifier':
        raise ValueError(f'{mtype} (an mmpretrain model that is not an ImageClassifier, '
                         'e.g. a self-supervised pretraining model) makes no predictions '
                         'to infer; use a downstream config')
    if scope == 'mmseg' and ('fusion_neck' in model or mtype.startswith('CD')):
        return 'change_detection'
    return _SCOPE_TASK[scope]


def repo_or_mim_dir() -> str:
    """Where ``configs/`` and ``model-index.yml`` are: the repository of an
    editable install, else the package's ``.mim`` folder (``mim``-installed)."""
    import rsvheat_mm
    package = osp.dirname(osp.abspath(rsvheat_mm.__file__))
    repo = osp.dirname(package)
    if osp.isfile(osp.join(repo, 'model-index.yml')) and osp.isdir(osp.join(repo, 'configs')):
        return repo
    mim = osp.join(package, '.mim')
    if osp.isfile(osp.join(mim, 'model-index.yml')):
        return mim
    raise FileNotFoundError(f'neither {repo} nor {mim} holds model-index.yml and configs/; '
                            'install rsvheat_mm from its repository (pip install -e .) or '
                            'with mim')


def _models_from_index(root: str) -> Iterator[dict]:
    index = load(osp.join(root, 'model-index.yml'))
    for meta_path in index['Import']:
        yield from load(osp.join(root, meta_path))['Models']


def _from_model_index(model: str) -> Tuple[Config, Optional[str]]:
    root = repo_or_mim_dir()
    name = model.lower()
    for entry in _models_from_index(root):
        aliases = entry.get('Alias') or []
        aliases = [aliases] if isinstance(aliases, str) else aliases
        if name == entry['Name'].lower() or name in [a.lower() for a in aliases]:
            weights = entry.get('Weights')
            weights = weights[0] if isinstance(weights, list) else weights
            return Config.fromfile(osp.join(root, entry['Config'])), weights
    raise ValueError(f'{model!r} is neither a config file nor a model of '
                     f'{osp.join(root, "model-index.yml")} (see '
                     'RSVHeatInferencer.list_models())')


def resolve_config(model, weights: Optional[str] = None
                   ) -> Tuple[Config, Optional[str], Optional[dict]]:
    """``(cfg, weights, checkpoint)`` of a model argument.

    Args:
        model (str | Config | dict | None): Config file, ``Config``/dict, or a
            model name / alias of ``model-index.yml``; None: the config
            stored in the ``weights`` checkpoint.
        weights (str, optional): Checkpoint; a model-index name brings its
            released weights when this is None.

    Returns:
        tuple: A fresh ``Config``, the weights to load and, when the config
        came from the checkpoint, the checkpoint already loaded (else None).
    """
    if isinstance(model, str):
        if osp.isfile(model):
            return Config.fromfile(model), weights, None
        cfg, index_weights = _from_model_index(model)
        return cfg, weights if weights is not None else index_weights, None
    if isinstance(model, Config):
        return copy.deepcopy(model), weights, None
    if isinstance(model, ConfigDict):
        return Config(copy.deepcopy(model.to_dict())), weights, None
    if isinstance(model, dict):
        return Config(copy.deepcopy(model)), weights, None
    if model is None:
        if weights is None:
            raise ValueError('give a config (model=...) or a checkpoint (weights=...) '
                             'that stores its config')
        from mmengine.runner.checkpoint import _load_checkpoint
        checkpoint = _load_checkpoint(weights, map_location='cpu')
        try:
            cfg_string = checkpoint['message_hub']['runtime_info']['cfg']
        except (KeyError, TypeError):
            cfg_string = (checkpoint.get('meta') or {}).get('cfg')
        if not cfg_string:
            raise ValueError(f'{weights} stores no config (message_hub/meta); pass '
                             'model=CONFIG')
        return Config.fromstring(cfg_string, file_format='.py'), weights, checkpoint
    raise TypeError(f'model must be a config path, a model name, a Config or a dict, '
                    f'got {type(model).__name__}')


def list_models(scope: Optional[str] = None, patterns: str = r'.*') -> List[str]:
    """Names of the models in ``model-index.yml`` matching ``patterns``
    (and, with ``scope``, whose config has that ``default_scope``)."""
    root = repo_or_mim_dir()
    names = []
    for entry in _models_from_index(root):
        if scope is not None:
            cfg_scope = Config.fromfile(osp.join(root, entry['Config'])).get('default_scope')
            if cfg_scope != scope:
                continue
        if re.match(patterns, entry['Name']):
            names.append(entry['Name'])
    return names
