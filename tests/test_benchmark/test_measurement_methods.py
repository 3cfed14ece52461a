"""The benchmark's measuring methods (tools/analysis/benchmarking) against
known quantities: FLOPs of known ops, bytes of known allocations, the
model's own cost facts against the FLOP counter, exact power laws."""
import importlib
import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from tests.helpers import ROOT, import_benchmarking

flops = import_benchmarking('flops')
memory = import_benchmarking('memory')
growth = import_benchmarking('growth')
zoo = import_benchmarking('zoo')
# The module (the package re-exports a function of the same name).
hc = importlib.import_module('rsvheat_mm.models.layers.heat_conduction')
MiB = 1 << 20


# ---------------------------------------------------------------------------
# FLOPs
# ---------------------------------------------------------------------------
def test_flops_of_the_dct_gemms_and_ffts():
    b, h, w, c = 2, 12, 20, 8
    decay = torch.rand(h, w, c)
    cost = flops.count_step_cost(
        lambda: hc.heat_conduction(torch.empty(b, h, w, c), decay, True, 'matmul'))
    # Forward + inverse transform along W and along H, 2 FLOPs per MAC.
    assert cost['flops'] == 2 * (2 * b * h * w * c * (h + w))

    cost = flops.count_step_cost(
        lambda: hc.heat_conduction(torch.empty(b, h, w, c), decay, True, 'fft'))
    fft = sum(v for k, v in cost['flops_by_op'].items() if k in flops.FFT_OPS)
    assert fft == cost['flops'] > 0  # FFTs only, no GEMM left
    # One forward (real input) and one inverse (complex) FFT per axis and line.
    n_pts = b * h * w * c
    expected = sum((2.5 + 5.0) * n_pts * math.log2(n) for n in (h, w))
    assert fft == pytest.approx(expected, abs=4)  # each op's count is rounded

    # pocketfft: counted by the formula the op registers with torch itself.
    cost = flops.count_step_cost(
        lambda: hc.heat_conduction(torch.empty(b, h, w, c), decay, True, 'scipy'))
    assert set(cost['flops_by_op']) == {'rsvheat.pocketfft_dct'}
    expected = sum(2 * 2.5 * n_pts * math.log2(n) for n in (h, w))
    assert cost['flops'] == pytest.approx(expected, abs=4)
    assert torch.ops.rsvheat.pocketfft_dct not in flops.EXTRA_FLOP_FORMULAS


def test_extra_formulas_only_where_torch_has_none():
    assert flops.EXTRA_FLOP_FORMULAS  # torch lacks at least the CPU flash attention
    for op in flops.EXTRA_FLOP_FORMULAS:
        assert op not in flop_registry


def test_sdpa_on_cpu_is_counted():
    bsz, heads, seq, dim = 1, 2, 16, 8
    q = torch.randn(bsz, heads, seq, dim, requires_grad=True)
    with FlopCounterMode(display=False) as plain:
        F.scaled_dot_product_attention(q, q, q)
    cpu_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    if cpu_flash not in flop_registry:
        assert plain.get_total_flops() == 0  # why the tool adds a formula
    fwd = 2 * 2 * bsz * heads * seq * seq * dim  # QK^T and AV
    cost = flops.count_step_cost(lambda: F.scaled_dot_product_attention(q, q, q))
    assert cost['flops'] == fwd
    cost = flops.count_step_cost(
        lambda: F.scaled_dot_product_attention(q, q, q).sum().backward())
    # Backward as torch counts the fused kernels: recompute QK^T, then dP, dV, dQ, dK.
    assert cost['flops'] == fwd + 5 * fwd // 2
    q.grad = None


def test_fake_count_equals_real_count():
    """Counting on fake tensors gives what counting the real step gives; in
    inference that is also what torch's plain FlopCounterMode gives (RS-vHeat
    needs no extra formula)."""
    from rsvheat_mm.models.backbones.rsvheat import RSVHeat
    model = RSVHeat(dict(depths=[1, 1, 1, 1], embed_dims=16), in_channels=dict(optical=3),
                    check_finite=False)
    x = torch.randn(1, 3, 64, 96)
    for train in (False, True):
        model.train(train)

        def step(make_x):
            with torch.set_grad_enabled(train):
                out = model(make_x())
                if train:
                    sum(o.mean() for o in out).backward()

        fake = flops.count_step_cost(lambda: step(lambda: torch.empty(1, 3, 64, 96)))['flops']
        model.zero_grad(set_to_none=True)
        model.clear_cache()
        with flops.flop_counter() as real:
            step(lambda: x)
        model.zero_grad(set_to_none=True)
        assert fake == real.get_total_flops() > 0
        if not train:
            with FlopCounterMode(display=False) as plain:
                step(lambda: x)
            assert plain.get_total_flops() == fake


def test_counter_sees_the_fused_training_path():
    """FlopCounterMode's module tracking registers global forward hooks, and
    RS-vHeat's fused training blocks step aside under hooks: the tool's
    counter registers none, so it counts the fused path that really runs
    (which recomputes, e.g., the MLP hidden: more FLOPs than autograd)."""
    from rsvheat_mm.models.backbones import rsvheat
    arch = dict(depths=[1, 1, 1, 1], embed_dims=16)
    calls = []
    counted = {}
    for fused in (True, False):
        model = rsvheat.RSVHeat(arch, in_channels=dict(optical=3), check_finite=False,
                                fused_training=fused).train()
        orig = model.stages[0].blocks[0].forward_fused
        model.stages[0].blocks[0].forward_fused = lambda *a, **k: calls.append(1) or orig(*a, **k)
        with flops.flop_counter() as counter:
            sum(o.mean() for o in model(torch.randn(1, 3, 64, 64))).backward()
        counted[fused] = counter.get_total_flops()
    assert len(calls) == 1  # the fused block ran under the counter
    assert counted[True] > counted[False]


@pytest.mark.parametrize('mode', ['infer', 'train'])
@pytest.mark.parametrize('options', [dict(), dict(fused_training=False),
                                     dict(with_cp=True)], ids=['fused', 'autograd', 'cp'])
def test_model_transform_flops_agree_with_the_counter(mode, options):
    """The DCT share the tool reports is the model's own fact
    (``RSVHeat.transform_flops``): with every axis on pocketfft it equals
    what the counter counts for the pocketfft op, and the GEMM-DCT model's
    extra FLOPs over it equal the difference of the two models' facts."""
    from rsvheat_mm.models.backbones.rsvheat import RSVHeat
    arch = dict(depths=[1, 1, 2, 1], embed_dims=16)
    hw = (64, 96)
    measure = import_benchmarking('measure')
    counted, facts = {}, {}
    for impl in ('scipy', 'matmul'):
        model = RSVHeat(arch, in_channels=dict(optical=3), dct_impl=impl, check_finite=False,
                        **options).train(mode == 'train')
        step = measure.make_step(model, mode, 'cpu', no_grad_ctx=torch.no_grad)
        counted[impl] = flops.count_step_cost(lambda: step(torch.empty(1, 3, *hw)))
        model.zero_grad(set_to_none=True)
        facts[impl] = model.transform_flops(hw, batch=1, mode=mode)
    # The op's formula rounds each call, the model's sum once: <= 1 per call.
    assert counted['scipy']['flops_by_op']['rsvheat.pocketfft_dct'] == \
        pytest.approx(facts['scipy'], abs=64)
    assert counted['matmul']['flops'] - counted['scipy']['flops'] == \
        pytest.approx(facts['matmul'] - facts['scipy'], abs=64)


# ---------------------------------------------------------------------------
# Memory: a known allocation shows up
# ---------------------------------------------------------------------------
def test_live_bytes_on_fake_tensors():
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        with memory.LiveBytesMode() as live:
            a = torch.ones(1 << 20)  # 4 MiB
            b = a * 2  # 4 MiB
            del a
            c = b.view(-1)[:10]  # a view: nothing new
            d = b + 1  # 4 MiB
            assert live.live == 8 * MiB
            del b, c, d
    assert live.peak == 8 * MiB  # a was freed before d existed


def _tiny_rsvheat():
    from rsvheat_mm.models.backbones.rsvheat import RSVHeat
    return RSVHeat(dict(depths=[1, 1, 1, 1], embed_dims=16), in_channels=dict(optical=3)).eval()


def test_cpu_step_memory_sees_a_known_allocation():
    assert memory.cpu_memory_method() is None
    model = _tiny_rsvheat()
    x = torch.randn(1, 3, 64, 64)
    extra_mib = 64

    def step(extra):
        # The extra tensor is alive during the forward pass, so it adds to the
        # peak instead of reusing the activations' pages; ones() touches it.
        keep = torch.ones(extra * MiB // 4) if extra else None
        with torch.inference_mode():
            model(x)
        return keep is not None

    step(0)  # warm: caches filled, thread pools up
    measured = {}
    for extra in (0, extra_mib, 0):
        with memory.StepMemory('cpu') as mem:
            step(extra)
        assert mem.activation == mem.peak - mem.before and mem.before > 0
        measured.setdefault(extra, []).append(mem.activation / MiB)
    base = max(measured[0])
    assert 0.9 * extra_mib <= measured[extra_mib][0] - base <= extra_mib + 8
    # The high-water mark is reset by every measurement: a small step after a
    # big one reads small again.
    assert measured[0][1] < 0.5 * measured[extra_mib][0]
    assert 'VmHWM' in mem.method


def test_tensor_peak_sees_a_known_allocation():
    """The allocator-level tensor peak: exact for PyTorch's own tensors, and
    the model runs its real path (no dispatch mode: the cache is filled)."""
    model = _tiny_rsvheat()
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        model(x)
    model.clear_cache()
    peaks = {}
    for extra in (0, 16):
        with memory.TensorPeak() as t:
            keep = torch.ones(extra * MiB // 4) if extra else None
            with torch.inference_mode():
                model(x)
            del keep
        peaks[extra] = t.peak
    # Without the 16 MiB the first step also filled the cache (kept: net > 0).
    assert t.net == 0 and len(model.resolution_cache) > 0
    assert peaks[16] - peaks[0] == pytest.approx(16 * MiB, abs=0.05 * 16 * MiB)
    with memory.TensorPeak() as t:
        a = torch.ones(MiB // 4)  # 1 MiB
        b = torch.ones(2 * MiB // 4)  # 2 MiB
        del a
        c = torch.ones(MiB // 4)  # 1 MiB: peak stays 3 MiB
        del b, c
    assert t.peak == 3 * MiB and t.net == 0


def test_fresh_process_resident_growth_of_known_allocations(tmp_path):
    """In a fresh process: a 64 MiB tensor kept between forwards (like a
    cache) and a 128 MiB temporary per forward read as kept ~64 MiB and peak
    growth ~192 MiB (default glibc allocator, as in a user's process)."""
    code = (
        'import json, torch\n'
        'from benchmarking.resident import resident_growth\n'
        'keep = []\n'
        'def forward():\n'
        '    tmp = torch.ones(128 * 2**20 // 4)\n'
        '    if not keep:\n'
        '        keep.append(torch.ones(64 * 2**20 // 4))\n'
        '    return float(tmp[0])\n'
        'print(json.dumps(resident_growth(forward, 3)))\n')
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [os.path.join(ROOT, 'tools', 'analysis'), ROOT, env.get('PYTHONPATH', '')])
    proc = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    kept = res['fresh_rss_kept_bytes'] / MiB
    peak = res['mem_fresh_rss_growth_bytes'] / MiB
    assert 0.9 * 64 <= kept <= 64 + 16, res
    assert 0.9 * 192 <= peak <= 192 + 24, res
    assert len(res['fresh_rss_after_each_bytes']) == 3


# ---------------------------------------------------------------------------
# The model zoo: facts from the model classes
# ---------------------------------------------------------------------------
def test_zoo_comes_from_the_model_classes():
    from mmpretrain.models import ViTSAM
    from rsvheat_mm.models.backbones.rsvheat import RSVHeat
    sizes = {n for n, e in zoo.MODEL_ZOO.items() if e.family == 'rsvheat' and not e.options}
    archs = {(tuple(a['depths']), a['embed_dims']) for a in RSVHeat.arch_zoo.values()}
    assert len(sizes) == len(archs)
    assert all(zoo.MODEL_ZOO[n].arch in RSVHeat.arch_zoo for n in sizes)
    assert {'rsvheat-base-autograd', 'rsvheat-base-cp', 'rsvheat-base-sac'} <= set(zoo.MODEL_ZOO)
    assert set(zoo.DEFAULT_MODELS) == sizes | {'vit-b16', 'swin-b', 'vitsam-b'}
    glob = '/'.join(map(str, ViTSAM.arch_zoo['base']['global_attn_indexes']))
    assert f'layers {glob}' in zoo.describe('vitsam-b')
    built = {n: zoo.build_model(n, (64, 64), tiny=True)
             for n in ('rsvheat-base', 'rsvheat-base-autograd', 'rsvheat-base-cp',
                       'rsvheat-base-sac')}
    flags = {n: (m.stages[0].fused_training, m.stages[0].blocks[0].with_cp or False)
             for n, m in built.items()}
    assert flags == {'rsvheat-base': (True, False), 'rsvheat-base-autograd': (False, False),
                     'rsvheat-base-cp': (True, 'full'), 'rsvheat-base-sac': (True, 'selective')}
    model = built['rsvheat-base']
    assert zoo.transform_flops(model, (64, 64), 2, 'infer', 'cpu') == \
        model.transform_flops((64, 64), batch=2, mode='infer', device='cpu') > 0
    zoo.clear_model_caches(model)  # also the process-wide bases earlier tests left
    assert zoo.cache_bytes(model) == 0
    with torch.inference_mode():
        model.eval()(torch.randn(1, 3, 64, 64))
    assert zoo.cache_bytes(model) > 0
    zoo.clear_model_caches(model)
    assert len(model.resolution_cache) == 0


# ---------------------------------------------------------------------------
# Growth fits
# ---------------------------------------------------------------------------
def test_growth_exponent_and_extrapolation():
    pixels = [s * s for s in (512, 1024, 2048, 4096)]
    values = [3.0 * p**1.5 for p in pixels]
    assert growth.growth_exponent(pixels, values) == pytest.approx(1.5)
    # Only sizes >= 1024 px: a changing slope below is ignored.
    values[0] = 1.0
    assert growth.growth_exponent(pixels, values, 1024**2) == pytest.approx(1.5)
    assert growth.growth_exponent(pixels[:1], values[:1]) is None
    assert growth.extrapolate(pixels[1:3], values[1:3], pixels[3]) == pytest.approx(values[3])
    # Never extrapolated slower than linear in N.
    assert growth.extrapolate([1, 2], [5, 5], 4) == pytest.approx(10)
    assert growth.extrapolate([1], [5], 4) is None


def test_fresh_process_keeps_what_the_model_caches():
    """Through the benchmark's fork server: RS-vHeat-T at 512 px keeps its
    decays and resized SCEs between forwards (the model reports their bytes,
    about 30 MiB, within its 64 MiB cache budget); the kept resident growth
    covers them, and the peak growth covers what is kept."""
    import types
    resident = import_benchmarking('resident')
    args = types.SimpleNamespace(device='cpu', amp='none', fresh_forwards=2,
                                 pretrain_size=(224, 224), tiny=False, threads=2, tf32=False)
    fresh = resident.FreshProcess(args, timeout=600)
    try:
        res = fresh('rsvheat-tiny', (512, 512), 1)
    finally:
        fresh.close()
    assert 'fresh_error' not in res, res
    cached = res['fresh_cache_bytes']
    assert cached > 16 * MiB
    assert res['fresh_rss_kept_bytes'] >= 0.9 * cached
    assert res['mem_fresh_rss_growth_bytes'] >= res['fresh_rss_kept_bytes']
