#!/usr/bin/env python
"""Train any rsvheat_mm / OpenMMLab config (mmpretrain, mmseg, mmdet, mmrotate).

The toolbox is taken from the config's ``default_scope``; one script serves
all four. Examples::

    python tools/train.py configs/segmentation/upernet_rsvheat-b_8xb2-80k_potsdam-512x512.py
    python tools/train.py CONFIG --work-dir work_dirs/x --amp --resume
    bash tools/dist_train.sh CONFIG 8            # torchrun, NCCL or gloo on CPU
"""
import argparse
import os.path as osp

# Registers rsvheat_mm and installs its safe checkpoint loading (weights-only
# with mmengine's allow-list), atomic writes and Python 3.10+ shims.
import rsvheat_mm  # noqa: F401

from mmengine.config import DictAction


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and checkpoints')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from the given checkpoint, or, without a value, from the '
        'latest checkpoint in the work dir')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision (fp16 with loss scaling on CUDA, '
                        'bf16 autocast on CPU)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by the actual/base batch size')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, e.g. train_cfg.max_iters=100')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=None)
    args = parser.parse_args()
    return args


def main():
    args = parse_args()
    from rsvheat_mm.engine.launch import build_runner, load_config
    cfg = load_config(args, amp=args.amp)

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(f'--resume: checkpoint not found: {args.resume}')
        cfg.resume = True
        cfg.load_from = args.resume

    if args.auto_scale_lr:
        if cfg.get('auto_scale_lr', {}).get('base_batch_size') is None:
            raise KeyError('--auto-scale-lr needs `auto_scale_lr.base_batch_size` '
                           'in the config')
        cfg.auto_scale_lr.enable = True

    runner = build_runner(cfg)
    runner.train()


if __name__ == '__main__':
    main()
