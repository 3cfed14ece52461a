"""tools/analysis/benchmark.py end to end on CPU, toy models and sizes.

Shapes of the outputs and what each row must hold; speed itself is not
tested. The measuring methods are checked against known quantities in
test_measurement_methods.py.
"""
import json
import runpy
import types
import os.path as osp

import pytest
import torch

from tests.helpers import ROOT, import_benchmarking

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


@pytest.fixture(scope='module')
def tool():
    """The CLI's functions (tools/ is not a package; its sibling package
    ``benchmarking`` is imported first, as running the script would)."""
    import_benchmarking()
    path = osp.join(ROOT, 'tools', 'analysis', 'benchmark.py')
    return types.SimpleNamespace(**runpy.run_path(path, run_name='rsvheat_benchmark_tool'))


def _run(tool, tmp_path, *argv):
    return tool.main(['--tiny', '--threads', '1', '--warmup', '1', '--iters', '1',
                      '--out-dir', str(tmp_path), *argv])


def test_table_outputs(tool, tmp_path):
    models = ['rsvheat-tiny', 'vit-b16', 'vitsam-b']
    threads = torch.get_num_threads()
    payload = _run(tool, tmp_path, '--models', *models, '--sizes', '64x96', '64',
                   '--fresh-forwards', '0')
    assert torch.get_num_threads() == threads  # restored for the caller

    md = (tmp_path / 'benchmark.md').read_text()
    saved = json.loads((tmp_path / 'benchmark.json').read_text())
    assert (tmp_path / 'benchmark.png').read_bytes()[:8] == PNG_MAGIC
    assert saved['complete'] and saved['results'] == json.loads(json.dumps(payload['results']))
    env = saved['env']
    assert {'device', 'threads', 'versions', 'command', 'pretrain_size', 'cpu_flags',
            'cpu_capability', 'amp_native'} <= set(env)
    # The CPU flags that decide bf16 speed are recorded, whatever their value.
    assert {'avx512_bf16', 'amx_bf16', 'avx512f'} <= set(env['cpu_flags'])
    assert '--fresh-forwards 0' in env['command']

    results = saved['results']
    # Every model x size x mode, sizes in ascending pixel count.
    assert [(r['model'], r['size_str'], r['mode']) for r in results] == [
        (m, s, mode) for m in models for s in ('64', '64x96') for mode in ('infer', 'train')]
    keys = {'params', 'flops_per_image', 'macs_per_image', 'dct_flops_per_image',
            'sec_per_image', 'images_per_s', 'iter_times', 'mem_before_bytes', 'mem_peak_bytes',
            'mem_activation_bytes', 'mem_tensor_peak_bytes', 'mem_method', 'attention',
            'ratio_flops', 'ratio_images_per_s', 'ratio_mem_activation', 'status'}
    for r in results:
        assert keys <= set(r), keys - set(r)
        assert r['status'] == 'ok'
        assert r['size'] == ([64, 96] if r['size_str'] == '64x96' else [64, 64])
        assert r['flops_per_image'] > 0 and r['macs_per_image'] * 2 == r['flops_per_image']
        assert len(r['iter_times']) == 1
        assert r['images_per_s'] == pytest.approx(1 / r['sec_per_image'])
        assert r['mem_peak_bytes'] >= r['mem_before_bytes'] > 0
        assert r['mem_activation_bytes'] == r['mem_peak_bytes'] - r['mem_before_bytes']
        assert r['mem_tensor_peak_bytes'] > 0
        assert 'mem_fresh_rss_growth_bytes' not in r  # --fresh-forwards 0
        if r['model'] == 'vit-b16':
            assert r['ratio_flops'] == r['ratio_images_per_s'] == 1.0
    by = {(r['model'], r['size_str'], r['mode']): r for r in results}
    for mode in ('infer', 'train'):
        for m in models:
            assert by[m, '64x96', mode]['flops_per_image'] > by[m, '64', mode]['flops_per_image']
            assert by[m, '64', 'train']['flops_per_image'] > by[m, '64', 'infer']['flops_per_image']
        # How each model computes attention, from the ops it dispatched.
        assert 'scaled_dot_product' in by['vit-b16', '64', mode]['attention']
        assert by['vitsam-b', '64', mode]['attention'] == 'explicit matmul + softmax'
        assert by['rsvheat-tiny', '64', mode]['attention'] == 'none'
        r = by['rsvheat-tiny', '64', mode]
        assert 0 < r['dct_flops_per_image'] < r['flops_per_image']
        assert r['cache_bytes'] >= 0
        assert by['vit-b16', '64', mode]['dct_flops_per_image'] is None
        assert by['rsvheat-tiny', '64', mode]['ratio_flops'] == pytest.approx(
            r['flops_per_image'] / by['vit-b16', '64', mode]['flops_per_image'])

    # The Markdown: one section per mode, one row per measurement, ratio columns.
    assert '## Inference' in md and '## Training step' in md
    assert md.count('| rsvheat-tiny | 64x96 | 1 |') == 2
    assert 'FLOPs ×' in md and 'img/s ×' in md and '1.00×' in md and 'tensor peak ×' in md
    # Descriptions read from the classes' arch_zoo entries.
    assert 'RS-vHeat-T (2-2-6-2, C=96)' in md and 'global attention in layers 2/5/8/11' in md


def test_fresh_process_column_and_amp(tool, tmp_path):
    """Inference rows get the fresh-process resident growth; --amp runs on
    CPU, and the report says whether this CPU has native bf16."""
    payload = _run(tool, tmp_path, '--models', 'rsvheat-base', '--sizes', '64', '--modes',
                   'infer', 'train', '--fresh-forwards', '2', '--amp', 'bf16',
                   '--baseline', 'none')
    infer, train = payload['results']
    assert infer['amp'] == train['amp'] == 'bf16'
    assert 'fresh_error' not in infer, infer.get('fresh_error')
    assert infer['fresh_forwards'] == 2 and len(infer['fresh_rss_after_each_bytes']) == 2
    assert infer['mem_fresh_rss_growth_bytes'] >= max(0, infer['fresh_rss_kept_bytes'])
    assert infer['fresh_cache_bytes'] >= 0
    assert 'mem_fresh_rss_growth_bytes' not in train  # inference only
    md = (tmp_path / 'benchmark.md').read_text()
    assert 'fresh RSS growth (MiB)' in md
    env = payload['env']
    from benchmarking.environment import cpu_flags
    native = bool({'avx512_bf16', 'amx_bf16'} & cpu_flags())
    assert env['amp_native'] == native
    assert ('emulation' in md) == (not native)


def test_rsvheat_variants(tool, tmp_path):
    """The RS-vHeat-B variants of issue 16 exist and build as named."""
    payload = _run(tool, tmp_path, '--models', 'rsvheat-base', 'rsvheat-base-autograd',
                   'rsvheat-base-cp', 'rsvheat-base-sac', '--sizes', '64', '--modes', 'train',
                   '--flops-only', '--baseline', 'rsvheat-base')
    rows = payload['results']
    assert [r['model'] for r in rows] == [
        'rsvheat-base', 'rsvheat-base-autograd', 'rsvheat-base-cp', 'rsvheat-base-sac']
    assert all(r['status'] == 'flops-only' for r in rows)
    by = {r['model']: r for r in rows}
    # Same weights: same parameter count; full checkpointing recomputes the blocks.
    assert len({r['params'] for r in rows}) == 1
    assert by['rsvheat-base-cp']['flops_per_image'] > by['rsvheat-base']['flops_per_image']
    # The DCT share follows each path's own transform count (the model's fact).
    assert by['rsvheat-base-cp']['dct_flops_per_image'] > \
        by['rsvheat-base']['dct_flops_per_image'] > \
        by['rsvheat-base-autograd']['dct_flops_per_image']


def test_run_budget_skips_and_lists(tool, tmp_path):
    """A run budget used up at once: every measurement is skipped with the
    reason (FLOPs and time are not spent), and the report lists them."""
    payload = _run(tool, tmp_path, '--models', 'rsvheat-tiny', 'vit-b16', '--sizes', '64',
                   '128', '--modes', 'infer', '--fresh-forwards', '0', '--order', 'size',
                   '--run-budget', '0.001')
    rows = payload['results']
    assert [(r['model'], r['size_str'], r['status']) for r in rows] == [
        (m, s, 'skipped') for s in ('64', '128') for m in ('rsvheat-tiny', 'vit-b16')]
    assert all(r['skip_reason'] == '--run-budget used up' for r in rows)
    md = (tmp_path / 'benchmark.md').read_text()
    assert 'Skipped: 4 measurement(s)' in md and 'vit-b16 infer 128' in md


def test_budget_verdict_predicts_the_run_time():
    """Step time predicted from the same model's smaller size (scaled by
    FLOPs), else from another model's seconds per FLOP; a measurement that
    would end after the deadline is skipped, one that fits is not."""
    import time
    measure = import_benchmarking('measure')
    args = types.SimpleNamespace(mem_budget=None, time_budget=None, warmup=2, iters=5)
    cpu = torch.device('cpu')
    done = dict(status='ok', sec_per_iter=2.0, flops_per_image=1e9, batch=1, pixels=64 * 64,
                size=[64, 64])
    rec = dict(flops_per_image=4e9, batch=1, pixels=128 * 128)
    # 1 recorded + 2 warm-up + 2 memory + 5 timed steps of 8 s = 80 s (+ 5 s fresh)
    reason = measure.budget_verdict(rec, [done], args, cpu, deadline=time.monotonic() + 60,
                                    fresh_seconds=5)
    assert reason.startswith('predicted 85 s') and '--run-budget' in reason
    assert rec['predicted_sec_per_iter'] == pytest.approx(8.0)
    assert measure.budget_verdict(dict(rec), [done], args, cpu,
                                  deadline=time.monotonic() + 600) is None
    # No history of this model: another model's rate in this mode.
    rec = dict(flops_per_image=4e9, batch=1, pixels=128 * 128)
    assert measure.budget_verdict(rec, [], args, cpu, others=[done],
                                  deadline=time.monotonic() + 60) is not None
    assert rec['predicted_sec_per_iter'] == pytest.approx(8.0)


def test_scaling_outputs_and_budget(tool, tmp_path):
    # Built for each size: RS-vHeat's conductivity GEMM on the FVE grid then
    # scales with the image too (at a fixed 224 px grid it is a constant that
    # dominates toy models).
    payload = _run(tool, tmp_path / 'a', '--scaling', '--models', 'rsvheat-tiny',
                   '--sizes', '64', '128', '--modes', 'infer', '--fit-min-side', '64',
                   '--baseline', 'none', '--fresh-forwards', '0', '--pretrain-size', 'input')
    assert (tmp_path / 'a' / 'scaling.png').read_bytes()[:8] == PNG_MAGIC
    md = (tmp_path / 'a' / 'scaling.md').read_text()
    exp = json.loads((tmp_path / 'a' / 'scaling.json').read_text())['exponents']
    e = exp['rsvheat-tiny']['infer']
    assert e['measured_sizes'] == ['64', '128'] and e['skipped'] == {}
    # Per image FLOPs of a conv/linear net with GEMM DCTs: between N^1 and N^1.5.
    assert 1.0 <= e['flops_per_image'] <= 1.5
    assert e['sec_per_image'] is not None and e['mem_activation_bytes'] is not None
    assert e == payload['exponents']['rsvheat-tiny']['infer']
    assert '| rsvheat-tiny | infer |' in md

    # A budget below what the process already holds: nothing runs, FLOPs
    # are still counted, and the report says what was skipped and why.
    payload = _run(tool, tmp_path / 'b', '--scaling', '--models', 'vit-b16', '--sizes', '64',
                   '128', '--modes', 'train', '--fit-min-side', '64', '--mem-budget', '0.001')
    rows = payload['results']
    assert [r['status'] for r in rows] == ['skipped', 'skipped']
    assert 'predicted peak' in rows[0]['skip_reason'] and '--mem-budget' in rows[0]['skip_reason']
    assert 'smaller size was skipped' in rows[1]['skip_reason']
    assert all(r['flops_per_image'] > 0 and r.get('sec_per_image') is None for r in rows)
    e = payload['exponents']['vit-b16']['train']
    assert set(e['skipped']) == {'64', '128'} and e['measured_sizes'] == []
    assert e['flops_per_image'] is not None and e['sec_per_image'] is None
    md = (tmp_path / 'b' / 'scaling.md').read_text()
    assert 'Skipped: 2 measurement(s)' in md and 'vit-b16 train 128' in md


def test_profile_dct(tool, tmp_path):
    out = _run(tool, tmp_path, '--profile-dct', '--dct-lengths', '16', '8', '--dct-channels',
               '4')
    assert [r['length'] for r in out['rows']] == [8, 16]
    assert all(r[f'{i}_ms'] > 0 for r in out['rows'] for i in ('matmul', 'fft', 'scipy'))
    assert set(out['suggested_min_length']) == {'fft', 'scipy'}
    saved = json.loads((tmp_path / 'dct_profile.json').read_text())
    assert saved['rows'] == out['rows']
    md = (tmp_path / 'dct_profile.md').read_text()
    assert 'POCKETFFT_MIN_LENGTH' in md and 'FFT_MIN_LENGTH' in md and 'pocketfft (ms)' in md


@pytest.mark.parametrize('argv, message', [
    (['--sizes', '100'], 'multiples of 32'),
    (['--sizes', 'big'], 'is not a size'),
    (['--models', 'vit-l16'], '--models: unknown'),
    (['--models', 'rsvheat-tiny'], '--baseline vit-b16 is not among --models'),
    (['--warmup', '0'], '--warmup must be >= 1'),
    (['--fresh-forwards', '-1'], '--fresh-forwards must be >= 0'),
    (['--run-budget', '0'], '--run-budget must be > 0'),
    (['--scaling', '--batch-sizes', '4'], '--scaling measures single images'),
    (['--pretrain-size', 'abc'], '--pretrain-size'),
])
def test_bad_arguments_are_named(tool, capsys, argv, message):
    with pytest.raises(SystemExit):
        tool.parse_args(['--device', 'cpu', *argv])
    assert message in capsys.readouterr().err


def test_cli_runs_as_a_script(tmp_path):
    """``python tools/analysis/benchmark.py`` finds its sibling package by
    Python's script-folder rule (no sys.path edits), from any directory."""
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'analysis', 'benchmark.py'),
                           '--tiny', '--flops-only', '--models', 'rsvheat-tiny', '--sizes', '64',
                           '--modes', 'infer',
                           '--baseline', 'none', '--out-dir', str(tmp_path)],
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / 'benchmark.json').read_text())['complete']
