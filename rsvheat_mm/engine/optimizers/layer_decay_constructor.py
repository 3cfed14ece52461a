"""Layer-wise learning-rate decay for models built on :class:`RSVHeat`.

mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` asks the model for
``get_layer_depth`` (which RSVHeat, an mmseg ``EncoderDecoder`` or our
multimodal segmentor do not have) and only exists under mmpretrain. This
constructor derives the depth from RSVHeat's parameter names instead, so the
same ``optim_wrapper`` works in mmpretrain, mmseg, mmdet and mmrotate
configs, and it reuses mmengine's ``DefaultOptimWrapperConstructor`` for all
the weight-decay rules (``custom_keys``, ``norm_decay_mult``, ...).
"""
from collections import defaultdict
from typing import List, Sequence, Tuple

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor

from rsvheat_mm.registry import OPTIM_WRAPPER_CONSTRUCTORS


def get_rsvheat_layer_id(name: str, depths: Sequence[int]) -> Tuple[int, int]:
    """Layer id of an RSVHeat parameter (name relative to the backbone).

    ``stems.*`` -> 0; ``stages.<i>.blocks.<j>.*`` -> ``sum(depths[:i]) + j + 1``;
    the stage's shared ``fve``/``sce`` take the id of its first block (the
    earliest user); ``stages.<i>.downsample.*`` the id of the stage's last
    block (as mmpretrain's Swin does); the output norms ``norm<i>`` and
    anything else the top id ``num_layers - 1``, like the heads.

    Returns:
        tuple[int, int]: ``(layer_id, num_layers)`` with
        ``num_layers = sum(depths) + 2``.
    """
    num_layers = sum(depths) + 2
    parts = name.split('.')
    if parts[0] == 'stems':
        return 0, num_layers
    if parts[0] == 'stages' and len(parts) > 2:
        stage = int(parts[1])
        offset = sum(depths[:stage])
        if parts[2] == 'blocks':
            return offset + int(parts[3]) + 1, num_layers
        if parts[2] == 'downsample':
            return offset + depths[stage], num_layers
        if parts[2] in ('fve', 'sce'):
            return offset + 1, num_layers
    return num_layers - 1, num_layers


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class RSVHeatLayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Layer-wise lr decay and RS-vHeat's no-weight-decay rules.

    The learning rate of a parameter with layer id ``l`` (see
    :func:`get_rsvheat_layer_id`; heads, necks and the backbone's output
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
                    layer_id, num_layers = get_rsvheat_layer_id(
                        name[len(head):], backbone.depths)
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
