"""Load RS-vHeat, vHeat and rsvheat_mm checkpoints into :class:`RSVHeat`.

Accepted inputs (auto-detected):

* rsvheat_mm / mmengine checkpoints (``state_dict`` with ``backbone.``
  prefix, e.g. from ``tools/train.py`` pretraining or a downstream model);
* official vHeat classification checkpoints (``model`` / ``model_ema``,
  ``patch_embed.*``, ``freq_embed.{i}``, ``layers.{i}.{j}.*``, head
  ``classifier.*`` dropped);
* official RS-vHeat checkpoints (``heat_capacity.{i}`` = SCE, stems
  ``patch_embed_opt`` / ``patch_embed_sar``), also pretraining checkpoints
  with the ``encoder.`` prefix (``fuse_frequency*`` and other
  pretraining-only keys dropped).

FVE/SCE grids are resized to the backbone's ``pretrain_img_size``, stems of
modalities missing from the checkpoint are initialised from its optical stem
(first conv adapted to the band count), and deploy (inference-only)
checkpoints are refused for training.
"""
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, Optional

import torch
from mmengine.logging import print_log

from rsvheat_mm.utils.checkpoint import load_checkpoint_safely

__all__ = [
    'convert_official_state_dict', 'extract_backbone_state_dict',
    'load_pretrained_rsvheat', 'adapt_stem_conv', 'infer_official_depths',
    'load_converted_state_dict', 'DeployCheckpointError'
]

_STEM_MAP = {'conv1': 'conv1', 'norm1.1': 'norm1', 'conv2': 'conv2', 'norm2.1': 'norm2'}
_OFFICIAL_STEMS = {'patch_embed': 'optical', 'patch_embed_opt': 'optical',
                   'patch_embed_sar': 'sar'}


class DeployCheckpointError(RuntimeError):
    """A deploy (inference-only) checkpoint was given to a trainable model."""


def _is_official(keys) -> bool:
    return any(k.startswith(('layers.', 'patch_embed', 'freq_embed.', 'heat_capacity.'))
               for k in keys)


def infer_official_depths(state: Dict[str, torch.Tensor]):
    """Blocks per stage of an official checkpoint.

    Inside ``layers.{i}`` the blocks ``0..depth-1`` hold ``op.*`` weights and
    the downsample follows at index ``depth`` as ``.0`` (conv) / ``.1`` (LN).
    """
    blocks = {}
    for key in state:
        m = re.match(r'layers\.(\d+)\.(\d+)\.op\.', key)
        if m:
            i, j = int(m.group(1)), int(m.group(2))
            blocks[i] = max(blocks.get(i, -1), j)
    if not blocks:
        raise ValueError('not an official vHeat/RS-vHeat state dict: no layers.{i}.{j}.op.* keys')
    return [blocks[i] + 1 for i in range(max(blocks) + 1)]


def convert_official_state_dict(state: Dict[str, torch.Tensor],
                                depths=None) -> 'OrderedDict[str, torch.Tensor]':
    """Map official vHeat/RS-vHeat keys to rsvheat_mm's :class:`RSVHeat` keys.

    Args:
        state (dict): Official state dict without wrapper prefix.
        depths (Sequence[int], optional): Blocks per stage (tells blocks from
            the downsample inside ``layers.{i}``); inferred when None.
    """
    if depths is None:
        depths = infer_official_depths(state)
    out = OrderedDict()
    for key, value in state.items():
        new = None
        m = re.match(r'(patch_embed(?:_opt|_sar)?)\.(conv1|norm1\.1|conv2|norm2\.1)\.(\w+)$', key)
        if m:
            new = f'stems.{_OFFICIAL_STEMS[m.group(1)]}.{_STEM_MAP[m.group(2)]}.{m.group(3)}'
        elif re.match(r'freq_embed\.\d+$', key):
            new = f'stages.{key.split(".")[1]}.fve'
        elif re.match(r'heat_capacity\.\d+$', key):
            new = f'stages.{key.split(".")[1]}.sce'
        else:
            m = re.match(r'layers\.(\d+)\.(\d+)\.(.+)$', key)
            if m:
                i, j, rest = int(m.group(1)), int(m.group(2)), m.group(3)
                if i < len(depths) and j == depths[i]:
                    # The downsample closes the stage: conv (.0) and LN (.1).
                    sub = {'0': 'conv', '1': 'norm'}.get(rest.split('.')[0])
                    if sub is not None:
                        new = f'stages.{i}.downsample.{sub}.{rest.split(".", 1)[1]}'
                elif i < len(depths) and j < depths[i]:
                    rest = rest.replace('op.to_k.0.', 'op.to_k.')
                    new = f'stages.{i}.blocks.{j}.{rest}'
        if new is None:
            continue  # classifier head, pretraining-only modules, ...
        if re.search(r'mlp\.fc[12]\.weight$', new) and value.dim() == 4:
            value = value.flatten(1)  # 1x1 conv -> Linear
        if re.search(r'gamma[12]$', new):
            value = value.flatten()
        out[new] = value
    return out


def adapt_stem_conv(weight: torch.Tensor, bands: int) -> torch.Tensor:
    """Adapt a first-conv weight ``(O, I, k, k)`` to ``bands`` input channels.

    The mean filter over the source bands is repeated and scaled by
    ``I / bands``, so an input with every band equal gives the same response.
    """
    src = weight.shape[1]
    if src == bands:
        return weight
    mean = weight.mean(dim=1, keepdim=True)
    return mean.repeat(1, bands, 1, 1) * (src / bands)


def extract_backbone_state_dict(ckpt, prefix: Optional[str] = None,
                                filename: str = '<checkpoint>'):
    """The raw backbone state dict inside a checkpoint object."""
    if isinstance(ckpt, dict):
        for wrapper in ('state_dict', 'model', 'model_ema', 'module'):
            if wrapper in ckpt and isinstance(ckpt[wrapper], dict):
                ckpt = ckpt[wrapper]
                break
    if not isinstance(ckpt, dict) or not ckpt:
        raise ValueError(f'{filename}: no state dict found in the checkpoint')
    state = {k[7:] if k.startswith('module.') else k: v for k, v in ckpt.items()
             if torch.is_tensor(v)}
    if prefix:
        if not prefix.endswith('.'):
            prefix += '.'
        picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not picked:
            raise ValueError(f'{filename}: no keys start with prefix {prefix!r} '
                             f'(first keys: {list(state)[:5]})')
        return picked
    for auto in ('backbone.', 'encoder.'):
        if any(k.startswith(auto) for k in state) and not any(
                k.startswith(('stems.', 'stages.', 'layers.', 'patch_embed')) for k in state):
            return {k[len(auto):]: v for k, v in state.items() if k.startswith(auto)}
    return state


def load_pretrained_rsvheat(model, init_cfg: dict, logger='current'):
    """Initialise ``model`` (an :class:`RSVHeat`) from ``init_cfg``.

    ``init_cfg = dict(type='Pretrained', checkpoint=PATH, prefix=None,
    map_location='cpu')``.
    """
    filename = init_cfg.get('checkpoint')
    if filename is None:
        raise KeyError("RSVHeat init_cfg of type 'Pretrained' needs `checkpoint`")
    map_location = init_cfg.get('map_location', 'cpu')
    if isinstance(filename, str) and osp.isfile(osp.expanduser(filename)):
        ckpt = load_checkpoint_safely(osp.expanduser(filename), map_location,
                                      allow_metadata=True)
    else:
        from mmengine.runner.checkpoint import CheckpointLoader
        ckpt = CheckpointLoader.load_checkpoint(filename, map_location=map_location)
    state = extract_backbone_state_dict(ckpt, init_cfg.get('prefix'), str(filename))

    deploy_keys = [k for k in state if k.endswith(('op.k_exp', 'op.k_pre'))]
    if deploy_keys and not model.deploy:
        raise DeployCheckpointError(
            f'{filename} is a deploy (inference-only) checkpoint: it holds the '
            f'precomputed conductivity ({deploy_keys[0]}) instead of the FVE and '
            '`to_k` weights, so it cannot initialise a trainable backbone. Use '
            'the training checkpoint, or build RSVHeat(deploy=True) for inference.')
    if any(k.endswith('op.k_exp') for k in state):
        raise DeployCheckpointError(
            f'{filename} is an official deploy checkpoint (op.k_exp: the decay at '
            'one fixed resolution, after ReLU); the resolution-independent '
            'conductivity cannot be recovered from it. Use the training checkpoint.')

    if _is_official(state):
        state = convert_official_state_dict(state, model.depths)
    return load_converted_state_dict(model, state, str(filename), logger)


def load_converted_state_dict(model, state, filename='<state_dict>', logger='current'):
    """Resize grids, fill missing stems and load ``state`` (our key names)."""
    own = model.state_dict()
    state = dict(state)
    # FVE/SCE grids follow this model's pretrain_img_size: RSVHeat resizes
    # them in its load_state_dict pre-hook, on every loading path.
    model._resize_grids_on_load(state, '')

    # Stems: adapt band counts; initialise absent modalities from 'optical'.
    src_stems = {k.split('.')[1] for k in state if k.startswith('stems.')}
    notes = []
    for modality, bands in model.in_channels.items():
        source = modality if modality in src_stems else (
            'optical' if 'optical' in src_stems else next(iter(sorted(src_stems)), None))
        if source is None:
            continue
        for name in ('conv1.weight', 'conv1.bias', 'norm1.weight', 'norm1.bias',
                     'conv2.weight', 'conv2.bias', 'norm2.weight', 'norm2.bias'):
            src_key, dst_key = f'stems.{source}.{name}', f'stems.{modality}.{name}'
            if src_key not in state:
                continue
            value = state[src_key]
            if name == 'conv1.weight':
                value = adapt_stem_conv(value, bands)
            state[dst_key] = value
        if source != modality or state[f'stems.{source}.conv1.weight'].shape[1] != bands:
            notes.append(f'{modality} stem ({bands} bands) from the checkpoint\'s {source} stem')
    for key in [k for k in state if k.startswith('stems.')]:
        if key.split('.')[1] not in model.in_channels:
            state.pop(key)

    mismatched = [k for k in state if k in own and state[k].shape != own[k].shape]
    if mismatched:
        raise ValueError(f'{filename}: shape mismatch for {mismatched[:5]}: '
                         f'{[tuple(state[k].shape) for k in mismatched[:5]]} vs '
                         f'{[tuple(own[k].shape) for k in mismatched[:5]]}; is the '
                         'arch (depths/embed_dims) the one the checkpoint was trained with?')
    incompatible = model.load_state_dict(state, strict=False)
    backbone_missing = [k for k in incompatible.missing_keys
                        if not re.match(r'norm\d+\.', k)]
    loaded = len(own) - len(incompatible.missing_keys)
    if loaded == 0:
        raise ValueError(f'{filename}: none of its {len(state)} tensors match an RSVHeat '
                         f'key (first: {list(state)[:5]}); set init_cfg.prefix?')
    msg = (f'RSVHeat: loaded {loaded}/{len(own)} tensors from {filename}')
    if notes:
        msg += '; ' + '; '.join(notes)
    if backbone_missing:
        msg += f'; missing (randomly initialised): {backbone_missing}'
    if incompatible.unexpected_keys:
        msg += f'; unused: {incompatible.unexpected_keys}'
    print_log(msg, logger=logger)
    return incompatible
