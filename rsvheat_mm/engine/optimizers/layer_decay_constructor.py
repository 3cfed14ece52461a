"""Layer-wise learning-rate decay for models built on :class:`RSVHeat`.

mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` asks the model's
backbone for ``get_layer_depth`` (which :class:`RSVHeat` has) but exists only
under mmpretrain and only looks at ``model.backbone``. This constructor asks
every :class:`RSVHeat` inside the model (a segmentor's, a siamese change
detector's, ...), so the same ``optim_wrapper`` works in mmpretrain, mmseg,
mmdet and mmrotate configs, and it reuses mmengine's
``DefaultOptimWrapperConstructor`` for all the weight-decay rules
(``custom_keys``, ``norm_decay_mult``, ...).
"""
from collections import defaultdict
from typing import List

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor

from rsvheat_mm.registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class RSVHeatLayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Layer-wise lr decay and RS-vHeat's no-weight-decay rules.

    The learning rate of a parameter with layer id ``l`` (see
    :meth:`RSVHeat.get_layer_depth`; heads, necks and the backbone's output
    norms are the last layer) is multiplied by
    ``layer_decay_rate ** (num_layers - 1 - l)``, on top of any ``lr_mult``
    from ``custom_keys``. Every :class:`RSVHeat` in the model is handled
    (e.g. ``backbone``); other parameters count as heads.

    ``paramwise_cfg`` takes mmengine's options plus:

    - ``layer_decay_rate`` (float): Defaults to 1 (no decay).

    and changes two defaults: ``flat_decay_mult=0.`` and ``norm_decay_mult=0.``
    (no weight decay for biases, norms and the layer-scale gammas), and the
    ``custom_keys`` ``'.fve'`` and ``'.sce'`` get ``decay_mult=0.`` (the
    frequency value and spatial correction embeddings). All can be
    overridden in the config.

    Example::

        optim_wrapper = dict(
            optimizer=dict(type='AdamW', lr=5e-4, weight_decay=0.05),
            constructor='RSVHeatLayerDecayOptimWrapperConstructor',
            paramwise_cfg=dict(layer_decay_rate=0.9))
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict = None):
        paramwise_cfg = dict(paramwise_cfg or {})
        self.layer_decay_rate = float(paramwise_cfg.pop('layer_decay_rate', 1.0))
        if not 0 < self.layer_decay_rate <= 1:
            raise ValueError('paramwise_cfg.layer_decay_rate must be in (0, 1], '
                             f'got {self.layer_decay_rate}')
        paramwise_cfg.setdefault('flat_decay_mult', 0.)
        paramwise_cfg.setdefault('norm_decay_mult', 0.)
        custom_keys = dict(paramwise_cfg.get('custom_keys', {}))
        for key in ('.fve', '.sce'):
            custom_keys.setdefault(key, dict(decay_mult=0.))
        paramwise_cfg['custom_keys'] = custom_keys
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '',
                   **kwargs) -> None:
        super().add_params(params, module, prefix, **kwargs)
        if prefix == '':  # the top-level call: every group is in ``params``
            self._apply_layer_decay(params, module)

    def _apply_layer_decay(self, params: List[dict], model: nn.Module) -> None:
        from rsvheat_mm.models.backbones import RSVHeat
        backbones = [(name, m) for name, m in model.named_modules() if isinstance(m, RSVHeat)]
        if not backbones:
            raise TypeError(f'{type(self).__name__}: the model {type(model).__name__} '
                            'has no RSVHeat module, so there are no RS-vHeat layers '
                            'to decay; use another optim wrapper constructor.')
        names = {id(p): n for n, p in model.named_parameters()}
        top = sum(backbones[0][1].depths) + 2  # heads and necks: the last layer
        summary = defaultdict(list)
        for group in params:
            name = names[id(group['params'][0])]
            layer_id, num_layers = top - 1, top
            for prefix, backbone in backbones:
                head = f'{prefix}.' if prefix else ''
                if name.startswith(head):
                    layer_id, num_layers = backbone.get_layer_depth(name, head)
                    break
            scale = self.layer_decay_rate**(num_layers - 1 - layer_id)
            group['lr'] = group.get('lr', self.base_lr) * scale
            group['layer_id'] = layer_id
            summary[layer_id].append(name)
        if self.layer_decay_rate < 1:
            lines = [f'layer {i}: lr scale {self.layer_decay_rate**(top - 1 - i):.4g}, '
                     f'{len(summary[i])} tensors' for i in sorted(summary)]
            print_log(f'RS-vHeat layer-wise lr decay {self.layer_decay_rate} over {top} '
                      'layers:\n  ' + '\n  '.join(lines), logger='current')
