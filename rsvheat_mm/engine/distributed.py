"""Distributed training on machines without CUDA (gloo backend).

mmengine 0.10.7 assumes CUDA for the PyTorch and Slurm launchers:
``init_dist`` calls ``torch.cuda.set_device`` and ``Runner.wrap_model``
passes ``device_ids=[LOCAL_RANK]`` to DDP, both of which fail on a CPU-only
host. :func:`init_cpu_distributed` starts the process group with gloo
before the Runner does (the Runner then skips its own ``init_dist``) and
:class:`CPUDistributedDataParallel` drops ``device_ids`` for CPU modules
and reverts SyncBN (CUDA-only) to plain BatchNorm.
"""
import os
import subprocess

import torch
import torch.distributed as dist
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm

from rsvheat_mm.registry import MODEL_WRAPPERS


def _slurm_env(port=None):
    """RANK/WORLD_SIZE/MASTER_* from Slurm's variables (as mmengine does)."""
    proc_id = int(os.environ['SLURM_PROCID'])
    ntasks = int(os.environ['SLURM_NTASKS'])
    node_list = os.environ['SLURM_NODELIST']
    addr = subprocess.getoutput(f'scontrol show hostname {node_list} | head -n1')
    os.environ.setdefault('MASTER_PORT', str(port or 29500))
    os.environ.setdefault('MASTER_ADDR', addr)
    os.environ['WORLD_SIZE'] = str(ntasks)
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')
    os.environ['RANK'] = str(proc_id)


def init_cpu_distributed(launcher: str, backend: str = 'gloo', timeout=None) -> None:
    """Initialise ``torch.distributed`` with gloo for ``launcher``.

    Args:
        launcher (str): ``'pytorch'`` (torchrun) or ``'slurm'``.
        backend (str): Defaults to ``'gloo'``.
    """
    if dist.is_available() and dist.is_initialized():
        return
    if launcher == 'slurm':
        _slurm_env()
    elif launcher != 'pytorch':
        raise ValueError(f'CPU distributed training supports the pytorch and '
                         f'slurm launchers, got {launcher!r}')
    kwargs = {} if timeout is None else dict(timeout=timeout)
    dist.init_process_group(backend=backend, rank=int(os.environ['RANK']),
                            world_size=int(os.environ['WORLD_SIZE']), **kwargs)
    print_log(f'initialised {backend} process group on CPU: rank '
              f'{dist.get_rank()}/{dist.get_world_size()}', logger='current')


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """:class:`MMDistributedDataParallel` that also runs on CPU (gloo).

    On CPU ``device_ids`` must be None and SyncBN has no kernel, so both are
    adjusted; on CUDA it behaves exactly like its parent.
    """

    def __init__(self, module, device_ids=None, **kwargs):
        on_cpu = all(p.device.type == 'cpu' for p in module.parameters())
        if on_cpu:
            device_ids = None
            if any(isinstance(m, torch.nn.SyncBatchNorm) for m in module.modules()):
                print_log('SyncBN has no CPU kernel: reverted to BatchNorm for '
                          'CPU distributed training', logger='current')
                module = revert_sync_batchnorm(module)
        super().__init__(module=module, device_ids=device_ids, **kwargs)
