#!/usr/bin/env python
"""Test (evaluate) a checkpoint with any rsvheat_mm / OpenMMLab config.

The toolbox is taken from the config's ``default_scope``. Examples::

    python tools/test.py CONFIG CHECKPOINT
    python tools/test.py CONFIG CHECKPOINT --out results.pkl --show-dir vis
    bash tools/dist_test.sh CONFIG CHECKPOINT 8
"""
import argparse
import os.path as osp

# Registers rsvheat_mm and installs its safe checkpoint loading (weights-only
# with mmengine's allow-list), atomic writes and Python 3.10+ shims.
import rsvheat_mm  # noqa: F401

from mmengine.config import DictAction


def parse_args():
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs and metrics')
    parser.add_argument('--out', help='dump the raw predictions to this pickle file')
    parser.add_argument('--show-dir', help='draw every prediction to SHOW_DIR/<image>.png '
                        '(relative to the work dir of the run)')
    parser.add_argument('--amp', action='store_true', help='mixed-precision inference')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=None)
    return parser.parse_args()


def _enable_visualization(cfg, show_dir):
    """Draw every test prediction to ``<work_dir>/<show_dir>/<image stem>.png``.

    rsvheat_mm's ``TestVisualizationHook`` does it alike for all toolboxes
    (their own hooks write to different places, some under the current
    directory, with names such as ``test_0.png_0.png``).
    """
    if cfg.get('visualizer') is None:
        raise KeyError('--show-dir: the config has no `visualizer`')
    hooks = list(cfg.get('custom_hooks') or [])
    hooks.append(dict(type='rsvheat_mm.TestVisualizationHook', out_dir=show_dir))
    cfg.custom_hooks = hooks


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
