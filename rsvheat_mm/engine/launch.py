"""Shared set-up of tools/train.py and tools/test.py for all four toolboxes."""
import os
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.logging import print_log

from .distributed import init_cpu_distributed

_DDP_TYPES = (None, 'MMDistributedDataParallel', 'mmengine.MMDistributedDataParallel')


def prepare_config(cfg: Config, launcher: str = 'none', work_dir=None,
                   config_path=None, amp: bool = False) -> Config:
    """Apply the command-line choices that every toolbox handles alike.

    * ``work_dir``: CLI > config > ``./work_dirs/<config name>``.
    * ``amp``: ``AmpOptimWrapper`` (dynamic loss scale) on CUDA, bf16
      ``CPUAmpOptimWrapper`` without CUDA.
    * ``launcher`` pytorch/slurm without CUDA: gloo process group and the
      CPU-capable DDP wrapper (mmengine's own launcher code needs CUDA).
    """
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        name = osp.splitext(osp.basename(config_path or 'config'))[0]
        cfg.work_dir = osp.join('./work_dirs', name)

    if amp:
        optim_wrapper = cfg.get('optim_wrapper')
        if optim_wrapper is None:
            raise KeyError('--amp needs an `optim_wrapper` in the config')
        wrapper_type = optim_wrapper.get('type', 'OptimWrapper')
        if wrapper_type in ('AmpOptimWrapper', 'CPUAmpOptimWrapper'):
            print_log(f'AMP is already enabled by {wrapper_type} in the config',
                      logger='current')
        elif torch.cuda.is_available():
            optim_wrapper.type = 'AmpOptimWrapper'
            optim_wrapper.setdefault('loss_scale', 'dynamic')
        else:
            optim_wrapper.type = 'CPUAmpOptimWrapper'
            optim_wrapper.setdefault('dtype', 'bfloat16')

    if launcher != 'none' and not torch.cuda.is_available():
        env_cfg = cfg.setdefault('env_cfg', {})
        backend = env_cfg.get('dist_cfg', {}).get('backend', 'gloo')
        if backend == 'nccl':
            backend = 'gloo'  # nccl needs CUDA
        init_cpu_distributed(launcher, backend)
        wrapper_cfg = cfg.get('model_wrapper_cfg', None)
        if wrapper_cfg is None:
            cfg.model_wrapper_cfg = dict(
                type='CPUDistributedDataParallel', broadcast_buffers=False,
                find_unused_parameters=cfg.get('find_unused_parameters', False))
        elif wrapper_cfg.get('type') in _DDP_TYPES:
            wrapper_cfg.type = 'CPUDistributedDataParallel'
    return cfg


def load_config(args, amp: bool = False) -> Config:
    """The config of a ``tools/train.py``/``test.py`` call, CLI options applied.

    ``args`` needs ``config``, ``cfg_options``, ``launcher``, ``work_dir`` and
    ``local_rank``.
    """
    set_local_rank_env(args.local_rank)
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config file not found: {args.config}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    return prepare_config(cfg, args.launcher, args.work_dir, args.config, amp)


def build_runner(cfg: Config):
    """``Runner.from_cfg`` or the config's ``runner_type``."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)


def set_local_rank_env(local_rank):
    """Old ``torch.distributed.launch`` passes ``--local-rank``."""
    if 'LOCAL_RANK' not in os.environ and local_rank is not None:
        os.environ['LOCAL_RANK'] = str(local_rank)
