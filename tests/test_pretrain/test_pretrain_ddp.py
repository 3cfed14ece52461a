"""Multi-process safety of RS-vHeat pretraining: every rank makes the same
collective calls whatever its batch holds.

The recipe's contrastive projector normalises with SyncBN, a collective. If
a rank whose batch holds no optical-SAR pair skipped the projector, the
other ranks would wait in that collective (a hang, or gloo/NCCL mixing up
unrelated buffers). Checked in one process (the projector runs for batches
with and without pairs) and under 2-process DDP with gloo (see
``ddp_worker.py``)."""
import torch
from mmengine.dataset import pseudo_collate

from tests.helpers import PYTHON, free_port, run_tool
from tests.test_pretrain.utils import build_model


def test_projector_runs_with_and_without_pairs(samples):
    model = build_model()
    calls = []
    model.projector.bn0.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    paired = model.data_preprocessor(pseudo_collate([samples[0], samples[1]]), True)
    model(**paired, mode='loss')
    assert calls == [3, 3]  # low and high view: 2 primaries + 1 partner each
    calls.clear()
    unpaired = model.data_preprocessor(pseudo_collate([samples[1], samples[3]]), True)
    losses = model(**unpaired, mode='loss')
    assert calls == [2, 2]  # the same calls, on the primaries alone
    assert losses['loss_con'].item() == 0
    sum(losses.values()).backward()
    for name, p in model.projector.named_parameters():  # reached, contributes nothing
        assert p.grad is not None and p.grad.abs().max() == 0, name


def test_two_process_ddp_with_a_rank_without_pairs(tmp_path):
    # A rank stuck in a collective would fail after the workers' 60 s
    # process-group timeout; run_tool kills the whole group after 400 s.
    run_tool([PYTHON, '-m', 'torch.distributed.run', '--nproc_per_node=2',
              f'--master_port={free_port()}', 'tests/test_pretrain/ddp_worker.py',
              '--out', str(tmp_path)], timeout=400, OMP_NUM_THREADS=1)

    ranks = [torch.load(tmp_path / f'rank{r}.pt', weights_only=False) for r in (0, 1)]
    assert all(p > 0 for p in ranks[0]['pairs']) and not any(ranks[1]['pairs'])
    assert all(v > 0 for v in ranks[0]['loss_con'])
    assert ranks[1]['loss_con'] == [0.0] * len(ranks[1]['loss_con'])
    # Same collectives on both ranks: two projector calls per step.
    steps = len(ranks[0]['pairs'])
    assert len(ranks[0]['bn0_calls']) == len(ranks[1]['bn0_calls']) == 2 * steps
    # DDP kept the replicas identical, and training moved them.
    a, b = ranks[0]['params'], ranks[1]['params']
    assert a.keys() == b.keys()
    unequal = [k for k in a if not torch.equal(a[k], b[k])]
    assert not unequal, unequal
    for name in ('backbone.stems.optical.conv1.weight', 'projector.fc0.weight',
                 'decoder.heads.optical.weight'):
        assert not torch.equal(a[name], ranks[0]['init'][name]), name
    # The projector of the pair-less rank still learnt (from rank 0's gradients),
    # and the synchronised statistics agree.
    assert not torch.equal(b['projector.fc0.weight'], ranks[1]['init']['projector.fc0.weight'])
    torch.testing.assert_close(ranks[0]['buffers']['projector.bn0.running_mean'],
                               ranks[1]['buffers']['projector.bn0.running_mean'])
