#!/usr/bin/env python
"""Test (evaluate) a checkpoint with any rsvheat_mm / OpenMMLab config.

The toolbox is taken from the config's ``default_scope``. Examples::

    python tools/test.py CONFIG CHECKPOINT
    python tools/test.py CONFIG CHECKPOINT --out results.pkl --show-dir vis
    bash tools/dist_test.sh CONFIG CHECKPOINT 8
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
# Registers rsvheat_mm and installs its safe checkpoint loading (weights-only
# with mmengine's allow-list), atomic writes and Python 3.10+ shims.
import rsvheat_mm  # noqa: E402,F401

from mmengine.config import DictAction  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs and metrics')
    parser.add_argument('--out', help='dump the raw predictions to this pickle file')
    parser.add_argument('--show-dir', help='save visualisations of predictions here '
                        '(relative to the work dir of the run)')
    parser.add_argument('--amp', action='store_true', help='mixed-precision inference')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=None)
    return parser.parse_args()


def _enable_visualization(cfg, show_dir):
    """Turn on the toolbox's visualization hook to write images to show_dir.

    Each toolbox names the switch differently (as in its own tools/test.py).
    """
    hooks = cfg.get('default_hooks', {})
    vis = hooks.get('visualization')
    if vis is None:
        raise KeyError('--show-dir: the config has no `default_hooks.visualization`')
    hook_type = str(vis.get('type', ''))
    if hook_type.endswith('DetVisualizationHook'):  # mmdet, mmrotate
        vis.draw = True
        vis.test_out_dir = show_dir
    elif hook_type.endswith('SegVisualizationHook'):  # mmseg: the visualizer saves
        vis.draw = True
        vis.interval = 1  # every test image, not every 50th
        cfg.visualizer.save_dir = show_dir
    elif hook_type.endswith('VisualizationHook'):  # mmpretrain
        vis.enable = True
        vis.out_dir = show_dir
    else:
        raise ValueError(f'--show-dir: unknown visualization hook {hook_type!r}')


def main():
    args = parse_args()
    from mmengine.evaluator import DumpResults

    from rsvheat_mm.engine.launch import build_runner, load_config
    cfg = load_config(args)
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')
    cfg.load_from = args.checkpoint
    if args.amp:
        cfg.test_cfg = cfg.get('test_cfg') or dict(type='TestLoop')
        cfg.test_cfg.fp16 = True
    if args.show_dir:
        _enable_visualization(cfg, args.show_dir)

    runner = build_runner(cfg)
    if args.out:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError(f'--out must be a .pkl file, got {args.out}')
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
    runner.test()


if __name__ == '__main__':
    main()
