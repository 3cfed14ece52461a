"""One rank of the 2-process DDP pretraining check (run by torchrun from
``test_pretrain_ddp.py``).

The paper recipe's model (``configs/pretrain/...opt-sar-224px.py``) with a
tiny backbone trains a few steps under :class:`CPUDistributedDataParallel`
(the wrapper ``tools/train.py`` uses on CPU), rank 0 on optical+SAR pairs and
rank 1 on batches without any pair. The recipe's projector norm is SyncBN,
which has no CPU kernel; :class:`GlooSyncBatchNorm` stands in for it with the
same collectives (an all-reduce of the batch statistics in forward and of
their gradients in backward), so a rank that skips the projector desynchronises
the collectives exactly as SyncBN would on GPUs.

Writes ``rank{R}.pt`` into ``--out``: the parameters and buffers after
training, the initial parameters, the number of projector ``bn0`` calls and
the per-step ``loss_con`` and pair counts.
"""
import argparse
import datetime
import os
import os.path as osp

import mmcv
import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from mmengine.config import Config
from mmengine.dataset import pseudo_collate

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PAPER = 'configs/pretrain/rsvheat-pretrain_rsvheat-b_8xb64-amp-coslr-200e_opt-sar-224px.py'


class GlooSyncBatchNorm(nn.BatchNorm1d):
    """Cross-process BatchNorm1d on CPU (gloo), a stand-in for SyncBN.

    In training mode with a process group, the per-channel sums, sums of
    squares and counts are all-reduced (differentiably: the backward pass
    all-reduces their gradients), like ``torch.nn.SyncBatchNorm``. Not a
    ``SyncBatchNorm`` subclass, so the CPU DDP wrapper does not revert it.
    """

    def forward(self, x):
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce
        c = x.shape[1]
        count = x.new_full((1, ), float(x.shape[0]))
        stats = all_reduce(torch.cat([x.sum(0), (x * x).sum(0), count]))
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp(min=0)
        with torch.no_grad():
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(m * mean)
            self.running_var.mul_(1 - m).add_(m * var * n / (n - 1).clamp(min=1))
            self.num_batches_tracked.add_(1)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


def make_batches(rank, steps, batch_size):
    """Packed 64 px crops of the bundled scenes; rank 0: every sample has a
    SAR (stand-in) partner, other ranks: no pair at all."""
    from rsvheat_mm.datasets.pretrain_datasets import simulate_sar_standin
    from rsvheat_mm.datasets.transforms.frequency_masking import (
        PackRSVHeatPretrainInputs, RSVHeatFrequencyMasking)
    rng = np.random.default_rng(rank)
    np.random.seed(rank)
    masking, pack = RSVHeatFrequencyMasking(), PackRSVHeatPretrainInputs()
    batches = []
    for step in range(steps):
        samples = []
        for j in range(batch_size):
            k = (step * batch_size + j) % 8 + 1
            img = mmcv.imread(osp.join(ROOT, 'demo', 'data', 'scenes', f'{k}.png'),
                              channel_order='rgb')
            y, x = 64 * (rank + 1), 64 * (step + 1)
            img = img[y:y + 64, x:x + 64].astype(np.float32)
            results = dict(img=img, modality='optical', img_path=f'{k}.png')
            if rank == 0:
                results.update(partner_img=simulate_sar_standin(img, rng=rng)[..., None],
                               partner_modality='sar')
            samples.append(pack(masking(results)))
        batches.append(pseudo_collate(samples))
    return batches


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--out', required=True)
    parser.add_argument('--steps', type=int, default=3)
    parser.add_argument('--batch-size', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    # A desynchronised collective fails after 60 s instead of hanging.
    dist.init_process_group('gloo', timeout=datetime.timedelta(seconds=60))
    rank = dist.get_rank()

    import rsvheat_mm  # noqa: F401
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    from rsvheat_mm.engine.distributed import CPUDistributedDataParallel
    from tests.helpers import TINY_ARCH
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(osp.join(ROOT, PAPER))
    assert cfg.model.projector.norm_cfg.type == 'SyncBN'  # what the stand-in replaces
    cfg.model.backbone.update(arch=TINY_ARCH, pretrain_img_size=64, drop_path_rate=0.)
    cfg.model.projector.norm_cfg = dict(type=GlooSyncBatchNorm)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    init = {k: v.detach().clone() for k, v in model.named_parameters()}
    calls = []
    model.projector.bn0.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    ddp = CPUDistributedDataParallel(model, broadcast_buffers=False,
                                     find_unused_parameters=cfg.find_unused_parameters)
    optim_cfg = cfg.optim_wrapper.to_dict()
    optim_cfg.update(type='OptimWrapper')  # the recipe's AmpOptimWrapper needs CUDA
    optim_cfg.pop('loss_scale', None)
    optim_cfg['optimizer']['lr'] = 1e-3
    optim = build_optim_wrapper(ddp, optim_cfg)

    loss_con, pairs = [], []
    for data in make_batches(rank, args.steps, args.batch_size):
        pairs.append(sum('partner_inputs' in s for s in data['data_samples']))
        log = ddp.train_step(data, optim)
        loss_con.append(float(log['loss_con']))
    torch.save(dict(params={k: v.detach() for k, v in model.named_parameters()},
                    buffers={k: v for k, v in model.named_buffers()}, init=init,
                    bn0_calls=calls, loss_con=loss_con, pairs=pairs),
               osp.join(args.out, f'rank{rank}.pt'))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == '__main__':
    os.chdir(ROOT)
    main()
