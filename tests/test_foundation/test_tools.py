"""tools/train.py and tools/test.py end to end on the bundled LoveDA tiles:
train, kill, resume from the saved iteration, 2-process DDP on CPU, AMP, test."""
import os
import os.path as osp
import re
import signal
import subprocess
import time

import pytest

from tests.helpers import PYTHON, ROOT, free_port, python_env

CONFIG = 'configs/demo/upernet_rsvheat-demo_1xb2-40iter_loveda-samples-256x256.py'
# Small and quick: tiny arch, 128 px crops, no validation during training.
FAST = ['model.backbone.arch.depths=[1,1,1,1]', 'model.backbone.arch.embed_dims=16',
        'model.decode_head.in_channels=[16,32,64,128]', 'model.decode_head.channels=16',
        'model.auxiliary_head.in_channels=64', 'model.auxiliary_head.channels=8',
        'train_cfg.val_interval=1000', 'default_hooks.logger.interval=1',
        'default_hooks.checkpoint.interval=2', 'default_hooks.checkpoint.max_keep_ckpts=10']


def _train_cmd(work_dir, max_iters, *extra):
    return [PYTHON, 'tools/train.py', CONFIG, '--work-dir', str(work_dir), *extra,
            '--cfg-options', f'train_cfg.max_iters={max_iters}', *FAST]


def _run(cmd, timeout=600, **env):
    proc = subprocess.run(cmd, cwd=ROOT, env=python_env(**env), capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f'{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}'
    return proc.stdout + proc.stderr


def _last_checkpoint(work_dir):
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def test_train_kill_resume(tmp_path):
    work_dir = tmp_path / 'run'
    log = open(tmp_path / 'first.log', 'w')
    proc = subprocess.Popen(_train_cmd(work_dir, 200), cwd=ROOT, env=python_env(),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 400
    try:
        while time.time() < deadline:
            if osp.exists(work_dir / 'iter_4.pth') and proc.poll() is None:
                break
            if proc.poll() is not None:
                pytest.fail('training exited early:\n' + open(tmp_path / 'first.log').read()[-3000:])
            time.sleep(0.2)
        else:
            pytest.fail('no checkpoint within the time limit')
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # like a pre-empted job
        proc.wait()
    saved = _last_checkpoint(work_dir)
    saved_iter = int(re.search(r'iter_(\d+)\.pth', saved).group(1))
    assert saved_iter >= 4
    # the interrupted run left no partial checkpoint behind
    assert not [f for f in os.listdir(work_dir) if f.endswith('.tmp')]

    out = _run(_train_cmd(work_dir, saved_iter + 2, '--resume'))
    assert f'resumed epoch: 0, iter: {saved_iter}' in out
    assert f'Iter(train) [{saved_iter + 1}/{saved_iter + 2}]' in out
    assert osp.exists(work_dir / f'iter_{saved_iter + 2}.pth')

    # tools/test.py on the resumed checkpoint, dumping raw predictions
    out = _run([PYTHON, 'tools/test.py', CONFIG, str(work_dir / f'iter_{saved_iter + 2}.pth'),
                '--work-dir', str(tmp_path / 'test'), '--out', str(tmp_path / 'preds.pkl'),
                '--show-dir', str(tmp_path / 'vis'), '--cfg-options', *FAST])
    assert re.search(r'mIoU: \d+\.\d+', out)
    assert osp.getsize(tmp_path / 'preds.pkl') > 0
    import glob
    assert glob.glob(str(tmp_path / 'vis' / '**' / '*.png'), recursive=True)


def test_two_process_ddp_on_cpu(tmp_path):
    work_dir = tmp_path / 'ddp'
    # with an extra, unused SAR stem: DDP must still see a gradient for it
    cmd = ['bash', 'tools/dist_train.sh', CONFIG, '2', '--work-dir', str(work_dir),
           '--cfg-options', 'train_cfg.max_iters=2', 'model.backbone.in_channels.sar=1', *FAST]
    out = _run(cmd, PYTHON=PYTHON, PORT=str(free_port()), OMP_NUM_THREADS=1)
    assert 'Distributed launcher: pytorch' in out
    assert 'GPU number: 2' in out  # mmengine prints the world size here
    assert 'initialised gloo process group on CPU: rank 0/2' in out
    assert osp.exists(work_dir / 'iter_2.pth')


def test_amp_on_cpu(tmp_path):
    out = _run(_train_cmd(tmp_path / 'amp', 2, '--amp'))
    assert 'CPUAmpOptimWrapper' in out
    assert 'Iter(train) [2/2]' in out
