"""The models the benchmark compares, built from the model classes.

Names and architectures come from the classes themselves: RS-vHeat's sizes
are the keys of :attr:`RSVHeat.arch_zoo` (one entry per distinct
architecture, named by its longest alias), the attention backbones are
mmpretrain's ``VisionTransformer``, ``SwinTransformer`` and ``ViTSAM`` at
their ``arch_zoo`` sizes, and the descriptions in the reports are read from
those ``arch_zoo`` entries. Facts about a model's cost that depend on its
internal choices (the FLOPs of RS-vHeat's DCTs) are asked from the model
(:func:`transform_flops`), never re-derived here.

RS-vHeat-B variants for training memory (issue 16):

* ``rsvheat-base``: the default, fused training blocks (``fused_training=True``);
* ``rsvheat-base-autograd``: ``fused_training=False``, plain autograd, for comparison;
* ``rsvheat-base-cp``: ``with_cp=True``, full activation checkpointing per block;
* ``rsvheat-base-sac``: ``with_cp='selective'``, selective activation checkpointing.
"""
import logging
from typing import Dict, NamedTuple, Optional, Tuple

__all__ = [
    'ZooEntry', 'MODEL_ZOO', 'DEFAULT_MODELS', 'build_model', 'init_weights_quietly',
    'describe', 'is_rsvheat',
    'transform_flops', 'clear_model_caches', 'cache_bytes'
]


class ZooEntry(NamedTuple):
    family: str  # 'rsvheat', 'vit', 'swin' or 'vitsam'
    arch: str  # key of the class's arch_zoo
    options: Dict  # constructor arguments of a variant
    note: str  # what the variant changes ('' for the plain model)
    tiny: Dict  # --tiny: toy widths/depths, same classes and code paths


def _rsvheat_class():
    from rsvheat_mm.models.backbones.rsvheat import RSVHeat
    return RSVHeat


#: --tiny architectures (tests, laptops), by family and size.
_TINY_RSVHEAT = dict(tiny=dict(arch=dict(depths=[1, 1, 1, 1], embed_dims=16)),
                     small=dict(arch=dict(depths=[1, 1, 2, 1], embed_dims=16)))
_TINY_RSVHEAT_DEFAULT = dict(arch=dict(depths=[1, 1, 2, 1], embed_dims=32))

#: RS-vHeat-B variants: name suffix -> (constructor arguments, description).
RSVHEAT_VARIANTS = {
    'autograd': (dict(fused_training=False),
                 'plain autograd training (fused_training=False), the path before the fused '
                 'blocks; changes only the training step'),
    'cp': (dict(with_cp=True), 'gradient checkpointing per block (with_cp=True); changes '
           'only training memory and time'),
    'sac': (dict(with_cp='selective'), "selective activation checkpointing "
            "(with_cp='selective': GEMM/conv outputs kept, the rest recomputed); changes "
            'only training memory and time'),
}


def _rsvheat_entries() -> Dict[str, ZooEntry]:
    zoo = _rsvheat_class().arch_zoo
    # Aliases ('b', 'base') share one architecture: name it by the longest.
    names = {}
    for key, arch in zoo.items():
        ident = (tuple(arch['depths']), arch['embed_dims'])
        if len(key) > len(names.get(ident, '')):
            names[ident] = key
    out = {}
    for key in names.values():
        tiny = _TINY_RSVHEAT.get(key, _TINY_RSVHEAT_DEFAULT)
        out[f'rsvheat-{key}'] = ZooEntry('rsvheat', key, {}, '', tiny)
    if 'rsvheat-base' in out:
        for suffix, (options, note) in RSVHEAT_VARIANTS.items():
            out[f'rsvheat-base-{suffix}'] = ZooEntry('rsvheat', 'base', options, note,
                                                     _TINY_RSVHEAT_DEFAULT)
    return out


MODEL_ZOO: Dict[str, ZooEntry] = {
    **_rsvheat_entries(),
    'vit-b16': ZooEntry('vit', 'b', {}, '',
                        dict(arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                                       feedforward_channels=64))),
    'swin-b': ZooEntry('swin', 'base', {}, '',
                       dict(arch=dict(embed_dims=16, depths=[1, 1, 1, 1],
                                      num_heads=[1, 1, 1, 1]), window_size=2)),
    'vitsam-b': ZooEntry('vitsam', 'base', {}, '',
                         dict(arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                                        feedforward_channels=64, global_attn_indexes=[1]),
                              window_size=2)),
}
#: Measured unless --models says otherwise: the plain models (variants only
#: change the training step; ask for them by name).
DEFAULT_MODELS = [n for n, e in MODEL_ZOO.items() if not e.options]


def is_rsvheat(name: str) -> bool:
    return MODEL_ZOO[name].family == 'rsvheat'


def _mmpretrain_class(family):
    from mmpretrain.models import SwinTransformer, ViTSAM, VisionTransformer
    return dict(vit=VisionTransformer, swin=SwinTransformer, vitsam=ViTSAM)[family]


def describe(name: str) -> str:
    """What ``name`` is, read from its class's ``arch_zoo``."""
    entry = MODEL_ZOO[name]
    if entry.family == 'rsvheat':
        arch = _rsvheat_class().arch_zoo[entry.arch]
        text = (f'RS-vHeat-{entry.arch[0].upper()} ({"-".join(map(str, arch["depths"]))}, '
                f'C={arch["embed_dims"]}), optical stem')
        return text + (f', {entry.note}' if entry.note else '')
    try:
        arch = _mmpretrain_class(entry.family).arch_zoo[entry.arch]
    except ImportError:
        return f'mmpretrain {entry.family} {entry.arch} (mmpretrain not installed)'
    if entry.family == 'vit':
        return (f'mmpretrain VisionTransformer ViT-B/16 ({arch["num_layers"]} layers, '
                f'C={arch["embed_dims"]}, {arch["num_heads"]} heads), global attention via '
                'F.scaled_dot_product_attention')
    if entry.family == 'swin':
        return (f'mmpretrain SwinTransformer Swin-B ({"-".join(map(str, arch["depths"]))}, '
                f'C={arch["embed_dims"]}), window 7, 4 stages out')
    glob = '/'.join(map(str, arch['global_attn_indexes']))
    return (f'mmpretrain ViTSAM-B/16 ({arch["num_layers"]} layers, C={arch["embed_dims"]}): '
            f'window-14 attention, global attention in layers {glob}, decomposed rel-pos '
            '(RVSA-style mix)')


def build_model(name: str, img_size: Tuple[int, int], tiny: bool = False):
    """Backbone ``name`` built for ``img_size`` (H, W), weights initialised."""
    entry = MODEL_ZOO[name]
    extra = dict(entry.tiny) if tiny else {}
    arch = extra.pop('arch', entry.arch)
    if entry.family == 'rsvheat':
        model = _rsvheat_class()(arch=arch, in_channels=dict(optical=3),
                                 pretrain_img_size=img_size, out_indices=(0, 1, 2, 3),
                                 drop_path_rate=0., **entry.options, **extra)
    elif entry.family == 'vit':
        model = _mmpretrain_class('vit')(arch=arch, img_size=img_size, patch_size=16,
                                         out_type='featmap', drop_path_rate=0., **extra)
    elif entry.family == 'swin':
        model = _mmpretrain_class('swin')(arch=arch, img_size=img_size,
                                          out_indices=(0, 1, 2, 3), drop_path_rate=0.,
                                          **{'window_size': 7, **extra})
    else:
        # out_channels=0: the bare ViT, without SAM's 256-channel neck.
        model = _mmpretrain_class('vitsam')(arch=arch, img_size=img_size, patch_size=16,
                                            out_channels=0, drop_path_rate=0., **extra)
    init_weights_quietly(model)
    return model


def init_weights_quietly(model) -> None:
    """``model.init_weights()`` without mmengine's INFO line per parameter."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)


def transform_flops(model, img_size, batch: int, mode: str, device,
                    dtype=None) -> Optional[int]:
    """FLOPs of the model's DCT/IDCT transforms in one step, as the model
    reports them (``RSVHeat.transform_flops``); None for models without, and
    None where the model cannot answer for ``dtype`` (the autocast dtype of
    the DCT input): on CPUs the transform per axis depends on it (pocketfft
    takes fp32 only), and a ``transform_flops`` without a ``dtype``
    argument answers for fp32."""
    import inspect

    import torch
    fn = getattr(model, 'transform_flops', None)
    if fn is None:
        return None
    kwargs = dict(batch=batch, mode=mode, device=device)
    if dtype is not None:
        if 'dtype' in inspect.signature(fn).parameters:
            kwargs['dtype'] = dtype
        elif torch.device(device).type == 'cpu':
            return None
    return int(fn(tuple(img_size), **kwargs))


def clear_model_caches(model) -> None:
    """Drop what the model keeps between forwards (RS-vHeat's resolution
    cache) and the process-wide DCT bases."""
    if callable(getattr(model, 'clear_cache', None)):
        model.clear_cache()
    try:
        from rsvheat_mm.models.layers import clear_heat_caches
    except ImportError:  # pragma: no cover - rsvheat_mm is always there
        return
    clear_heat_caches()


def cache_bytes(model) -> Optional[int]:
    """Bytes the model's resolution cache and the shared DCT-basis cache
    hold now; None for models without a resolution cache."""
    cache = getattr(model, 'resolution_cache', None)
    if cache is None:
        return None
    from rsvheat_mm.models.layers import HEAT_CACHE
    return int(cache.nbytes + HEAT_CACHE.nbytes)
