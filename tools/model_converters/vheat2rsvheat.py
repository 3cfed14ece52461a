#!/usr/bin/env python
"""Convert an official vHeat or RS-vHeat checkpoint to rsvheat_mm's key layout.

Accepts vHeat classification checkpoints (``model`` / ``model_ema``),
RS-vHeat backbone checkpoints (SCE in ``heat_capacity.*``, stems
``patch_embed_opt`` / ``patch_embed_sar``) and RS-vHeat pretraining
checkpoints (``encoder.`` prefix, ``fuse_frequency*`` dropped). The output
is a plain ``{'state_dict', 'meta'}`` file, loaded weights-only, that any
RSVHeat config uses via
``init_cfg=dict(type='Pretrained', checkpoint=OUT, prefix='backbone.')``.
Conversion is optional: ``init_cfg`` also accepts the official files
directly; converting once gives a smaller, safe file and a printed summary.

Example::

    python tools/model_converters/vheat2rsvheat.py vHeat_base.pth rsvheat-b_vheat-in1k.pth
"""
import argparse
import os.path as osp
from collections import OrderedDict


import torch

import rsvheat_mm
from rsvheat_mm.models.backbones.convert import (
    DeployCheckpointError, convert_official_state_dict, extract_backbone_state_dict,
    infer_official_depths)
from rsvheat_mm.utils import atomic_write, load_checkpoint_safely


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='official checkpoint (.pth)')
    parser.add_argument('dst', help='output checkpoint (.pth)')
    parser.add_argument('--src-prefix', default=None,
                        help="prefix of the backbone keys in SRC (auto: none or 'encoder.')")
    parser.add_argument('--prefix', default='backbone.',
                        help="prefix for the output keys (default 'backbone.')")
    parser.add_argument('--ema', action='store_true', help='take `model_ema` instead of `model`')
    return parser.parse_args(argv)


def summarize(state):
    """Describe the architecture the converted weights belong to."""
    stems = sorted({k.split('.')[1] for k in state if k.startswith('stems.')})
    depths = []
    i = 0
    while any(k.startswith(f'stages.{i}.') for k in state):
        depths.append(1 + max(int(k.split('.')[3]) for k in state
                              if k.startswith(f'stages.{i}.blocks.')))
        i += 1
    fve = state.get('stages.0.fve')
    dims = fve.shape[-1] if fve is not None else None
    grid = tuple(fve.shape[:2]) if fve is not None else None
    stem_bands = {s: int(state[f'stems.{s}.conv1.weight'].shape[1]) for s in stems}
    return dict(depths=depths, embed_dims=dims, stems=stem_bands,
                use_sce='stages.0.sce' in state, fve_grid=grid,
                pretrain_img_size=(grid[0] * 4, grid[1] * 4) if grid else None)


def main(argv=None):
    args = parse_args(argv)
    ckpt = load_checkpoint_safely(args.src, allow_metadata=True)
    if args.ema:
        if not isinstance(ckpt, dict) or 'model_ema' not in ckpt:
            raise KeyError(f'{args.src}: --ema given but the checkpoint has no `model_ema`')
        ckpt = {'model': ckpt['model_ema']}
    state = extract_backbone_state_dict(ckpt, args.src_prefix, args.src)
    if any(k.endswith('op.k_exp') for k in state):
        raise DeployCheckpointError(
            f'{args.src} is an official deploy checkpoint (op.k_exp): the trainable '
            'conductivity (to_k, freq_embed) is not in it, so it cannot be converted.')
    depths = infer_official_depths(state)
    converted = convert_official_state_dict(state, depths)
    dropped = len(state) - len(converted)
    info = summarize(converted)
    out = OrderedDict((args.prefix + k, v.clone()) for k, v in converted.items())
    meta = dict(source=osp.basename(args.src), converted_by=f'rsvheat_mm {rsvheat_mm.__version__}',
                arch=info)
    import io
    buffer = io.BytesIO()
    torch.save({'state_dict': out, 'meta': meta}, buffer)
    atomic_write(buffer.getvalue(), args.dst)
    print(f'converted {len(converted)} tensors ({dropped} head/pretraining-only tensors dropped)')
    print(f'architecture: {info}')
    print(f'saved {args.dst}; use init_cfg=dict(type=\'Pretrained\', checkpoint=\'{args.dst}\', '
          f"prefix='{args.prefix}')")
    return info


if __name__ == '__main__':
    main()
