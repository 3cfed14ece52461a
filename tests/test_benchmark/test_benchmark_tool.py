"""tools/analysis/benchmark.py and rsvheat_mm.utils.benchmark on CPU, toy sizes.

Shapes of the outputs and the correctness of what is counted; speed itself
is not tested.
"""
import importlib
import json
import math
import os.path as osp
import runpy
import types

import pytest
import torch
import torch.nn.functional as F

from rsvheat_mm.utils import benchmark as bm
from tests.helpers import ROOT

# The module (the package re-exports a function of the same name).
hc = importlib.import_module('rsvheat_mm.models.layers.heat_conduction')
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
MiB = 1 << 20


@pytest.fixture(scope='module')
def tool():
    """The tool's functions (tools/ is not a package)."""
    path = osp.join(ROOT, 'tools', 'analysis', 'benchmark.py')
    return types.SimpleNamespace(**runpy.run_path(path, run_name='rsvheat_benchmark_tool'))


def _run(tool, tmp_path, *argv):
    return tool.main(['--tiny', '--threads', '1', '--warmup', '1', '--iters', '1',
                      '--out-dir', str(tmp_path), *argv])


# ---------------------------------------------------------------------------
# The tool end to end
# ---------------------------------------------------------------------------
def test_table_outputs(tool, tmp_path):
    models = ['rsvheat-tiny', 'vit-b16', 'vitsam-b']
    threads = torch.get_num_threads()
    payload = _run(tool, tmp_path, '--models', *models, '--sizes', '64x96', '64')
    assert torch.get_num_threads() == threads  # restored for the caller

    md = (tmp_path / 'benchmark.md').read_text()
    saved = json.loads((tmp_path / 'benchmark.json').read_text())
    assert (tmp_path / 'benchmark.png').read_bytes()[:8] == PNG_MAGIC
    assert saved['complete'] and saved['results'] == json.loads(json.dumps(payload['results']))
    assert {'device', 'threads', 'versions', 'command', 'pretrain_size'} <= set(saved['env'])

    results = saved['results']
    # Every model x size x mode, sizes in ascending pixel count.
    assert [(r['model'], r['size_str'], r['mode']) for r in results] == [
        (m, s, mode) for m in models for s in ('64', '64x96') for mode in ('infer', 'train')]
    keys = {'params', 'flops_per_image', 'macs_per_image', 'dct_flops_per_image',
            'sec_per_image', 'images_per_s', 'iter_times', 'mem_before_bytes', 'mem_peak_bytes',
            'mem_activation_bytes', 'mem_method', 'attention', 'ratio_flops',
            'ratio_images_per_s', 'ratio_mem_activation', 'status'}
    for r in results:
        assert keys <= set(r), keys - set(r)
        assert r['status'] == 'ok'
        assert r['size'] == ([64, 96] if r['size_str'] == '64x96' else [64, 64])
        assert r['flops_per_image'] > 0 and r['macs_per_image'] * 2 == r['flops_per_image']
        assert len(r['iter_times']) == 1
        assert r['images_per_s'] == pytest.approx(1 / r['sec_per_image'])
        assert r['mem_peak_bytes'] >= r['mem_before_bytes'] > 0
        assert r['mem_activation_bytes'] == r['mem_peak_bytes'] - r['mem_before_bytes']
        if r['model'] == 'vit-b16':
            assert r['ratio_flops'] == r['ratio_images_per_s'] == 1.0
    by = {(r['model'], r['size_str'], r['mode']): r for r in results}
    for mode in ('infer', 'train'):
        # FLOPs grow with the image; training costs more than inference.
        for m in models:
            assert by[m, '64x96', mode]['flops_per_image'] > by[m, '64', mode]['flops_per_image']
            assert by[m, '64', 'train']['flops_per_image'] > by[m, '64', 'infer']['flops_per_image']
        # How each model computes attention, from the ops it dispatched.
        assert 'scaled_dot_product' in by['vit-b16', '64', mode]['attention']
        assert by['vitsam-b', '64', mode]['attention'] == 'explicit matmul + softmax'
        assert by['rsvheat-tiny', '64', mode]['attention'] == 'none'
        r = by['rsvheat-tiny', '64', mode]
        assert 0 < r['dct_flops_per_image'] < r['flops_per_image']
        assert by['vit-b16', '64', mode]['dct_flops_per_image'] is None
        assert by['rsvheat-tiny', '64', mode]['ratio_flops'] == pytest.approx(
            r['flops_per_image'] / by['vit-b16', '64', mode]['flops_per_image'])

    # The Markdown: one section per mode, one row per measurement, ratio columns.
    assert '## Inference' in md and '## Training step' in md
    assert md.count('| rsvheat-tiny | 64x96 | 1 |') == 2
    assert 'FLOPs ×' in md and 'img/s ×' in md and '1.00×' in md


def test_scaling_outputs_and_budget(tool, tmp_path):
    payload = _run(tool, tmp_path / 'a', '--scaling', '--models', 'rsvheat-tiny',
                   '--sizes', '64', '128', '--modes', 'infer', '--fit-min-side', '64',
                   '--baseline', 'none')
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
    (['--scaling', '--batch-sizes', '4'], '--scaling measures single images'),
    (['--pretrain-size', 'abc'], '--pretrain-size'),
])
def test_bad_arguments_are_named(tool, capsys, argv, message):
    with pytest.raises(SystemExit):
        tool.parse_args(['--device', 'cpu', *argv])
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------------------
# What is counted
# ---------------------------------------------------------------------------
def test_flops_of_the_dct_gemms_and_ffts():
    b, h, w, c = 2, 12, 20, 8
    decay = torch.rand(h, w, c)
    cost = bm.count_step_cost(
        lambda: hc.heat_conduction(torch.empty(b, h, w, c), decay, True, 'matmul'))
    # Forward + inverse transform along W and along H, 2 FLOPs per MAC.
    assert cost['flops'] == 2 * (2 * b * h * w * c * (h + w))

    cost = bm.count_step_cost(
        lambda: hc.heat_conduction(torch.empty(b, h, w, c), decay, True, 'fft'))
    fft = sum(v for k, v in cost['flops_by_op'].items() if k in bm.FFT_OPS)
    assert fft == cost['flops'] > 0  # FFTs only, no GEMM left
    # One forward (real input) and one inverse (complex) FFT per axis and line.
    n_pts = b * h * w * c
    expected = sum((2.5 + 5.0) * n_pts * math.log2(n) for n in (h, w))
    assert fft == pytest.approx(expected, abs=4)  # each op's count is rounded

    # pocketfft: one real-to-real transform per axis and line, each direction.
    cost = bm.count_step_cost(
        lambda: hc.heat_conduction(torch.empty(b, h, w, c), decay, True, 'scipy'))
    assert set(cost['flops_by_op']) == {'rsvheat.pocketfft_dct'}
    expected = sum(2 * 2.5 * n_pts * math.log2(n) for n in (h, w))
    assert cost['flops'] == pytest.approx(expected, abs=4)


def test_sdpa_on_cpu_is_counted():
    """FlopCounterMode alone counts the CPU flash-attention kernel as 0."""
    bsz, heads, seq, dim = 1, 2, 16, 8
    q = torch.randn(bsz, heads, seq, dim, requires_grad=True)
    with torch.utils.flop_counter.FlopCounterMode(display=False) as plain:
        F.scaled_dot_product_attention(q, q, q)
    assert plain.get_total_flops() == 0
    fwd = 2 * 2 * bsz * heads * seq * seq * dim  # QK^T and AV
    cost = bm.count_step_cost(lambda: F.scaled_dot_product_attention(q, q, q))
    assert cost['flops'] == fwd
    cost = bm.count_step_cost(lambda: F.scaled_dot_product_attention(q, q, q).sum().backward())
    # Backward as torch counts the fused kernels: recompute QK^T, then dP, dV, dQ, dK.
    assert cost['flops'] == fwd + 5 * fwd // 2
    q.grad = None


def test_fake_count_equals_real_count():
    """Counting on fake tensors gives what counting the real step gives."""
    from rsvheat_mm.models.backbones.rsvheat import RSVHeat
    model = RSVHeat(dict(depths=[1, 1, 1, 1], embed_dims=16), in_channels=dict(optical=3))
    x = torch.randn(1, 3, 64, 96)
    for train in (False, True):
        model.train(train)

        def step(make_x):
            with torch.set_grad_enabled(train):
                out = model(make_x())
                if train:
                    sum(o.mean() for o in out).backward()

        fake = bm.count_step_cost(lambda: step(lambda: torch.empty(1, 3, 64, 96)))['flops']
        model.zero_grad(set_to_none=True)
        for m in model.modules():
            if hasattr(m, 'clear_cache'):
                m.clear_cache()
        hc.clear_heat_caches()
        with torch.utils.flop_counter.FlopCounterMode(
                display=False, custom_mapping=bm.EXTRA_FLOP_FORMULAS) as real:
            step(lambda: x)
        model.zero_grad(set_to_none=True)
        assert fake == real.get_total_flops() > 0


def test_live_bytes_on_fake_tensors():
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        with bm.LiveBytesMode() as live:
            a = torch.ones(1 << 20)  # 4 MiB
            b = a * 2  # 4 MiB
            del a
            c = b.view(-1)[:10]  # a view: nothing new
            d = b + 1  # 4 MiB
            assert live.live == 8 * MiB
            del b, c, d
    assert live.peak == 8 * MiB  # a was freed before d existed


# ---------------------------------------------------------------------------
# Memory: a known allocation inside the step shows up
# ---------------------------------------------------------------------------
def test_cpu_step_memory_sees_a_known_allocation():
    assert bm.cpu_memory_method() is None
    from rsvheat_mm.models.backbones.rsvheat import RSVHeat
    model = RSVHeat(dict(depths=[1, 1, 1, 1], embed_dims=16), in_channels=dict(optical=3)).eval()
    x = torch.randn(1, 3, 64, 64)
    extra_mib = 64

    def step(extra):
        # The extra tensor is alive during the forward pass, so it adds to the
        # peak instead of reusing the activations' pages; ones() touches it.
        keep = torch.ones(extra * MiB // 4) if extra else None
        with torch.inference_mode():
            model(x)
        return keep is not None

    step(0)  # warm: bases and decays cached, thread pools up
    measured = {}
    for extra in (0, extra_mib, 0):
        with bm.StepMemory('cpu') as mem:
            step(extra)
        assert mem.activation == mem.peak - mem.before and mem.before > 0
        measured.setdefault(extra, []).append(mem.activation / MiB)
    base = max(measured[0])
    assert 0.9 * extra_mib <= measured[extra_mib][0] - base <= extra_mib + 8
    # The high-water mark is reset by every measurement: a small step after a
    # big one reads small again.
    assert measured[0][1] < 0.5 * measured[extra_mib][0]
    assert 'VmHWM' in mem.method


def test_growth_exponent_and_extrapolation():
    pixels = [s * s for s in (512, 1024, 2048, 4096)]
    values = [3.0 * p**1.5 for p in pixels]
    assert bm.growth_exponent(pixels, values) == pytest.approx(1.5)
    # Only sizes >= 1024 px: a changing slope below is ignored.
    values[0] = 1.0
    assert bm.growth_exponent(pixels, values, 1024**2) == pytest.approx(1.5)
    assert bm.growth_exponent(pixels[:1], values[:1]) is None
    assert bm.extrapolate(pixels[1:3], values[1:3], pixels[3]) == pytest.approx(values[3])
    # Never extrapolated slower than linear in N.
    assert bm.extrapolate([1, 2], [5, 5], 4) == pytest.approx(10)
    assert bm.extrapolate([1], [5], 4) is None
