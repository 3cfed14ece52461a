"""tools/analysis/gpu_check.sh: its CPU dry run end to end (the same steps
as on a GPU machine, toy models and sizes, this environment's packages), and
the parity check's verdicts."""
import json
import os.path as osp
import subprocess
import sys
import tarfile
import time

import torch

from tests.helpers import ROOT, import_benchmarking, python_env

SCRIPT = osp.join(ROOT, 'tools', 'analysis', 'gpu_check.sh')


def test_dry_run_end_to_end(tmp_path):
    """About 50 s of CPU time (preflight and checks, then one fp32 pass of
    the four models at 64 px, inference and training); the budget is wide so
    that a busy machine still measures the first models."""
    out = tmp_path / 'out'
    t0 = time.monotonic()
    proc = subprocess.run(['bash', SCRIPT, '--dry-run', '--out', str(out), '--budget', '300'],
                          cwd=str(tmp_path), env=python_env(OUT='', PYTHON=sys.executable),
                          capture_output=True,
                          text=True, timeout=420)
    seconds = time.monotonic() - t0
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    print(f'gpu_check.sh --dry-run: {seconds:.0f} s')
    summary = (out / 'summary.md').read_text()
    assert 'rsvheat_mm 0.' in (out / 'gpu_check.log').read_text()  # the preflight
    # Parity (CPU vs CPU with the torch.fft DCT) and both autocast steps.
    assert 'Parity, fp32' in summary and 'PASS' in summary
    with tarfile.open(out / 'results.tar.gz') as tar:
        names = {osp.basename(n) for n in tar.getnames()}
        checks = json.load(tar.extractfile('./device_checks.json'))
        bench = json.load(tar.extractfile('./benchmark_fp32.json'))
    assert {'device_checks.md', 'benchmark_fp32.md', 'benchmark_fp32.png'} <= names
    assert checks['parity']['ok'] and not checks['failed']
    assert [a['amp'] for a in checks['autocast']] == ['fp16', 'bf16']
    assert all(a['finite'] for a in checks['autocast'])
    # The benchmark: four models, both modes, skips (by the budget) listed.
    assert bench['complete'] and bench['env']['amp'] == 'none'
    rows = bench['results']
    assert [(r['model'], r['mode']) for r in rows] == [
        (m, mode) for m in ('rsvheat-base', 'vit-b16', 'swin-b', 'vitsam-b')
        for mode in ('infer', 'train')]
    assert {r['status'] for r in rows} <= {'ok', 'skipped'}
    assert rows[0]['status'] == 'ok' and 'mem_fresh_rss_growth_bytes' in rows[0]
    assert '## Backbone benchmark' in summary
    for r in rows:
        if r['status'] == 'skipped':
            assert f'{r["model"]} {r["mode"]} 64' in summary


def test_parity_passes_and_catches_a_wrong_kernel(monkeypatch):
    checks = import_benchmarking('device_checks')
    arch = dict(depths=[1, 1, 1, 1], embed_dims=16)
    cpu = torch.device('cpu')
    good = checks.parity(arch, 64, cpu, cpu, reference_dct_impl='fft')
    assert good['ok'] and good['n_grads'] > 10
    assert all(r['rel'] < 1e-5 for r in good['rows'].values())

    # A reference whose DCT differs slightly (a perturbed conductivity, as a
    # wrong decay or a stale cache would give): the check must fail.
    build = checks.build

    def perturbed(arch, size, dct_impl='auto', seed=0):
        model = build(arch, size, dct_impl, seed)
        if dct_impl == 'fft':
            model.load_state_dict = lambda sd: type(model).load_state_dict(
                model, {k: (v * 1.01 if 'to_k' in k else v) for k, v in sd.items()})
        return model

    monkeypatch.setattr(checks, 'build', perturbed)
    bad = checks.parity(arch, 64, cpu, cpu, reference_dct_impl='fft')
    assert not bad['ok'] and bad['grads_failed']


def test_compare_tolerances():
    checks = import_benchmarking('device_checks')
    a = torch.randn(100)
    assert checks.compare(a, a, 1e-4)['ok']
    assert not checks.compare(a * (1 + 1e-3), a, 1e-4)['ok']
    res = checks.compare(a.clone().fill_(float('nan')), a, 1.)
    assert not res['ok'] and not res['finite']


def test_autocast_step_is_finite():
    checks = import_benchmarking('device_checks')
    arch = dict(depths=[1, 1, 1, 1], embed_dims=16)
    for amp in ('bf16', 'fp16'):
        res = checks.autocast_step(arch, 64, torch.device('cpu'), amp)
        assert res['ok'] and res['finite'], res
        assert res['output_rel_err_vs_fp32'] < 0.1
