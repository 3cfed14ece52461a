"""mmengine hooks that let the tests look inside ``tools/train.py`` runs.

Imported only by the configs the tests write (``custom_imports``), never by
the package: a test's wrapper config adds them to ``custom_hooks``.

* :class:`DtypeProbeHook` records the output dtypes of every ``Linear`` and
  ``Conv2d`` in the training iterations (is mixed precision really on?) and
  the parameter dtypes.
* :class:`ParamDumpHook` saves each rank's parameters before and after
  training (are the DDP replicas identical?).
"""
import json
import os
import os.path as osp

import torch
import torch.nn as nn
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


@HOOKS.register_module()
class DtypeProbeHook(Hook):
    """Write ``{'linear': {dtype: [module names]}, 'conv': {...}, 'params':
    [dtypes]}`` (output dtypes seen in the training iterations' forwards) to
    ``out_file``."""

    def __init__(self, out_file):
        self.out_file = out_file
        self.seen = dict(linear={}, conv={})
        self._handles = []
        self._on = False

    def before_train(self, runner):
        for name, module in _unwrap(runner.model).named_modules():
            kind = 'linear' if isinstance(module, nn.Linear) else \
                'conv' if isinstance(module, nn.Conv2d) else None
            if kind is not None:
                self._handles.append(module.register_forward_hook(
                    lambda m, args, out, kind=kind, name=name: self._record(kind, name, out)))

    def _record(self, kind, name, out):
        if self._on:
            self.seen[kind].setdefault(str(out.dtype), set()).add(name)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self._on = True

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self._on = False

    def after_train(self, runner):
        for handle in self._handles:
            handle.remove()
        params = {str(p.dtype) for p in _unwrap(runner.model).parameters()}
        result = {k: {d: sorted(n) for d, n in v.items()} for k, v in self.seen.items()}
        result['params'] = sorted(params)
        with open(self.out_file, 'w') as f:
            json.dump(result, f)


@HOOKS.register_module()
class ParamDumpHook(Hook):
    """Save ``{'init': params, 'final': params}`` of this rank to
    ``out_dir/rank{R}.pth``."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        self._init = None

    def _params(self, runner):
        return {k: v.detach().clone() for k, v in _unwrap(runner.model).named_parameters()}

    def before_train(self, runner):
        self._init = self._params(runner)

    def after_train(self, runner):
        os.makedirs(self.out_dir, exist_ok=True)
        torch.save(dict(init=self._init, final=self._params(runner)),
                   osp.join(self.out_dir, f'rank{get_rank()}.pth'))
