"""tools/train.py and tools/test.py end to end on the bundled LoveDA tiles:
train, kill, resume (latest and an explicit checkpoint), test single-process
and with tools/dist_test.sh, 2-process DDP on CPU, AMP."""
import glob
import os
import os.path as osp
import pickle
import re
import signal
import subprocess
import time

import pytest
import torch

from tests.helpers import PYTHON, ROOT, free_port, python_env, run_tool

CONFIG = 'configs/demo/upernet_rsvheat-demo_1xb2-40iter_loveda-samples-256x256.py'
# Small and quick: tiny arch, 128 px crops, no validation during training.
FAST = ['model.backbone.arch.depths=[1,1,1,1]', 'model.backbone.arch.embed_dims=16',
        'model.decode_head.in_channels=[16,32,64,128]', 'model.decode_head.channels=16',
        'model.auxiliary_head.in_channels=64', 'model.auxiliary_head.channels=8',
        'train_cfg.val_interval=1000', 'default_hooks.logger.interval=1',
        'default_hooks.checkpoint.interval=2', 'default_hooks.checkpoint.max_keep_ckpts=10']


def _train_cmd(work_dir, max_iters, *extra, config=CONFIG):
    return [PYTHON, 'tools/train.py', config, '--work-dir', str(work_dir), *extra,
            '--cfg-options', f'train_cfg.max_iters={max_iters}', *FAST]


def _probe_config(tmp_path, hooks):
    """CONFIG plus test probes (tests/probes.py) as custom hooks."""
    path = tmp_path / 'probed.py'
    path.write_text(f"_base_ = [{osp.join(ROOT, CONFIG)!r}]\n"
                    "custom_imports = dict(imports=['rsvheat_mm', 'tests.probes'], "
                    "allow_failed_imports=False)\n"
                    f"custom_hooks = {hooks!r}\n")
    return str(path)


def _saved_iter(work_dir):
    """Iteration of the checkpoint named in ``last_checkpoint`` if that file is
    complete on disk, else None."""
    try:
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            saved = f.read().strip()
    except FileNotFoundError:
        return None
    match = re.search(r'iter_(\d+)\.pth$', saved)
    return int(match.group(1)) if match and osp.isfile(saved) else None


def test_train_kill_resume(tmp_path):
    work_dir = tmp_path / 'run'
    log = open(tmp_path / 'first.log', 'w')
    proc = subprocess.Popen(_train_cmd(work_dir, 200), cwd=ROOT, env=python_env(),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 400
    try:
        # Kill once the run is in a stable resumable state: the checkpoint
        # of iteration >= 4 is written *and* named by last_checkpoint (which
        # mmengine writes after the checkpoint file).
        while time.time() < deadline:
            saved_iter = _saved_iter(work_dir)
            if saved_iter is not None and saved_iter >= 4 and proc.poll() is None:
                break
            if proc.poll() is not None:
                log.flush()
                pytest.fail('training exited early:\n'
                            + open(tmp_path / 'first.log').read()[-3000:])
            time.sleep(0.2)
        else:
            pytest.fail('no checkpoint within the time limit')
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # like a pre-empted job
        proc.wait()
    saved_iter = _saved_iter(work_dir)  # may have advanced before the kill landed
    assert saved_iter >= 4
    # the interrupted run left no partial checkpoint behind
    assert not [f for f in os.listdir(work_dir) if f.endswith('.tmp')]

    # --resume: the latest checkpoint of the work dir
    out = run_tool(_train_cmd(work_dir, saved_iter + 2, '--resume'))
    assert f'resumed epoch: 0, iter: {saved_iter}' in out
    assert f'Iter(train) [{saved_iter + 1}/{saved_iter + 2}]' in out
    assert osp.exists(work_dir / f'iter_{saved_iter + 2}.pth')

    # --resume CKPT: an explicit, older checkpoint into another work dir
    other = tmp_path / 'from_iter_2'
    out = run_tool(_train_cmd(other, 3, '--resume', str(work_dir / 'iter_2.pth')))
    assert 'resumed epoch: 0, iter: 2' in out
    assert 'Iter(train) [3/3]' in out and osp.exists(other / 'iter_3.pth')
    with pytest.raises(AssertionError, match='checkpoint not found'):
        run_tool(_train_cmd(other, 3, '--resume', str(work_dir / 'iter_999.pth')))

    # tools/test.py on the resumed checkpoint, dumping raw predictions, on
    # all three tiles; then tools/dist_test.sh with 2 processes must score
    # the same predictions in the same order.
    ckpt = str(work_dir / f'iter_{saved_iter + 2}.pth')
    options = ['--cfg-options', *FAST, 'test_dataloader.dataset.ann_file=']
    out = run_tool([PYTHON, 'tools/test.py', CONFIG, ckpt, '--work-dir', str(tmp_path / 'test'),
                    '--out', str(tmp_path / 'preds.pkl'), '--show-dir', str(tmp_path / 'vis'),
                    *options], OMP_NUM_THREADS=1)
    single = _metrics(out)
    assert osp.getsize(tmp_path / 'preds.pkl') > 0
    assert glob.glob(str(tmp_path / 'vis' / '**' / '*.png'), recursive=True)
    out = run_tool(['bash', 'tools/dist_test.sh', CONFIG, ckpt, '2', '--work-dir',
                    str(tmp_path / 'dist_test'), '--out', str(tmp_path / 'dist_preds.pkl'),
                    *options], PYTHON=PYTHON, PORT=str(free_port()), OMP_NUM_THREADS=1)
    assert 'GPU number: 2' in out  # mmengine prints the world size here
    dist = _metrics(out)
    with open(tmp_path / 'preds.pkl', 'rb') as f:
        a = pickle.load(f)
    with open(tmp_path / 'dist_preds.pkl', 'rb') as f:
        b = pickle.load(f)
    assert [osp.basename(p['img_path']) for p in a] == ['0.png', '1.png', '2.png']
    assert [p['img_path'] for p in b] == [p['img_path'] for p in a]
    for p, q in zip(a, b):
        # same model, same kernels: at most a few near-tied pixels may differ
        same = (p['pred_sem_seg']['data'] == q['pred_sem_seg']['data']).float().mean()
        assert same > 0.999, (p['img_path'], float(same))
    assert single.keys() == dist.keys() and 'mIoU' in single
    for key in single:
        assert dist[key] == pytest.approx(single[key], abs=0.1), key


def _metrics(log):
    """The last ``Iter(test)`` metrics line of a tools/test.py log."""
    line = [ln for ln in log.splitlines() if 'Iter(test)' in ln and 'mIoU' in ln][-1]
    return {k: float(v) for k, v in re.findall(r'(\w+): (\d+\.\d+)', line.split('Iter(test)')[1])
            if k in ('aAcc', 'mIoU', 'mFscore', 'mF1', 'OA')}


def test_two_process_ddp_on_cpu(tmp_path):
    work_dir = tmp_path / 'ddp'
    config = _probe_config(tmp_path, [dict(type='ParamDumpHook', out_dir=str(tmp_path / 'params'))])
    # with an extra, unused SAR stem: DDP must still see a gradient for it
    cmd = ['bash', 'tools/dist_train.sh', config, '2', '--work-dir', str(work_dir),
           '--cfg-options', 'train_cfg.max_iters=2', 'model.backbone.in_channels.sar=1', *FAST]
    out = run_tool(cmd, PYTHON=PYTHON, PORT=str(free_port()), OMP_NUM_THREADS=1)
    assert 'initialised gloo process group on CPU: rank 0/2' in out
    assert osp.exists(work_dir / 'iter_2.pth')
    ranks = [torch.load(tmp_path / 'params' / f'rank{r}.pth', weights_only=False)
             for r in (0, 1)]
    a, b = ranks[0]['final'], ranks[1]['final']
    assert a.keys() == b.keys() and 'backbone.stems.sar.conv1.weight' in a
    unequal = [k for k in a if not torch.equal(a[k], b[k])]
    assert not unequal, unequal  # DDP kept the replicas identical ...
    moved = [k for k in a if not torch.equal(a[k], ranks[0]['init'][k])]
    assert 'backbone.stems.optical.conv1.weight' in moved  # ... and they trained
    assert 'decode_head.conv_seg.weight' in moved


def test_amp_on_cpu(tmp_path):
    config = _probe_config(tmp_path, [dict(type='DtypeProbeHook',
                                           out_file=str(tmp_path / 'dtypes.json'))])
    out = run_tool(_train_cmd(tmp_path / 'amp', 2, '--amp', config=config))
    assert 'Iter(train) [2/2]' in out
    import json
    with open(tmp_path / 'dtypes.json') as f:
        seen = json.load(f)
    # the GEMMs and convolutions of the training forwards ran in bf16 (none in
    # fp32: without autocast they all would); the master weights stay fp32
    assert list(seen['linear']) == ['torch.bfloat16'], seen
    assert list(seen['conv']) == ['torch.bfloat16'], seen
    assert 'backbone.stages.3.blocks.0.op.to_k' in seen['linear']['torch.bfloat16']
    assert 'decode_head.conv_seg' in seen['conv']['torch.bfloat16']
    assert seen['params'] == ['torch.float32'], seen
