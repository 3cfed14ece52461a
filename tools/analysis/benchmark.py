#!/usr/bin/env python
"""Benchmark RS-vHeat against attention backbones (GitHub issue 8).

For each model (rebuilt for each, freed between models) at each image size,
batch size and mode (``infer``: eval + ``torch.inference_mode``; ``train``:
train mode, forward + backward of a scalar loss, gradients included), in one
process:

* **parameters** of the backbone as built (see ``--pretrain-size``);
* **FLOPs and MACs** per image, counted by
  ``torch.utils.flop_counter.FlopCounterMode`` while the step runs on fake
  tensors (nothing computed, every op dispatched as on the real device; the
  CPU SDPA kernel and FFTs added, see :mod:`rsvheat_mm.utils.benchmark`),
  with the share of RS-vHeat's DCTs;
* **time**: warm-up, then timed iterations (CUDA synchronised): seconds per
  image and images/s;
* **peak memory** of one step and the **activation memory** = peak minus
  what the process held before the step (CUDA ``max_memory_allocated`` or
  the CPU process' resident high-water mark);
* **attention kernel** each model really dispatched (e.g. ViT-B/16 ->
  ``_scaled_dot_product_flash_attention_for_cpu``).

Outputs (``--out-dir``): ``<name>.md`` (tables with ratios to
``--baseline``), ``<name>.json`` (every number; rewritten after each
measurement) and ``<name>.png`` (each figure against resolution).
``--scaling`` runs single images from 512 to 4096 px and fits the growth
exponent in pixel count N above ``--fit-min-side`` px; ``--mem-budget``
skips a model at sizes predicted not to fit. ``--profile-dct`` times the
GEMM against the fast DCTs (pocketfft, torch.fft) to choose
``POCKETFFT_MIN_LENGTH`` / ``FFT_MIN_LENGTH``.

Examples::

    # the table (idle machine; CUDA if present)
    python tools/analysis/benchmark.py --sizes 224 512 1024 512x1024 \\
        --batch-sizes 1 8 --modes infer train --out-dir work_dirs/benchmark
    # the scaling study
    python tools/analysis/benchmark.py --scaling --mem-budget 70 \\
        --out-dir work_dirs/benchmark
    # quick check on a laptop
    python tools/analysis/benchmark.py --tiny --sizes 64 --iters 2
"""
import argparse
import datetime
import gc
import io
import json
import logging
import math
import os
import os.path as osp
import platform
import subprocess
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import rsvheat_mm  # noqa: E402,F401

import torch  # noqa: E402
from torch.utils._pytree import tree_leaves  # noqa: E402

from rsvheat_mm.models.layers import axis_impl  # noqa: E402
from rsvheat_mm.utils import atomic_write  # noqa: E402
from rsvheat_mm.utils import benchmark as bm  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# name -> (family, arch, description)
MODEL_ZOO = {
    'rsvheat-tiny': ('rsvheat', 'tiny', 'RS-vHeat-T (2-2-6-2, C=96), optical stem'),
    'rsvheat-small': ('rsvheat', 'small', 'RS-vHeat-S (2-2-18-2, C=96), optical stem'),
    'rsvheat-base': ('rsvheat', 'base', 'RS-vHeat-B (2-2-18-2, C=128), optical stem'),
    'rsvheat-base-cp': ('rsvheat', 'base', 'RS-vHeat-B with gradient checkpointing per block '
                        '(with_cp=True; changes only training memory and time)'),
    'rsvheat-base-sac': ('rsvheat', 'base', 'RS-vHeat-B with selective activation checkpointing '
                         "(with_cp='selective': GEMM/conv outputs kept, the rest recomputed; "
                         'changes only training memory and time)'),
    'vit-b16': ('vit', 'b', 'mmpretrain VisionTransformer ViT-B/16, global attention via '
                'F.scaled_dot_product_attention'),
    'swin-b': ('swin', 'base', 'mmpretrain SwinTransformer Swin-B, window 7, 4 stages out'),
    'vitsam-b': ('vitsam', 'base', 'mmpretrain ViTSAM-B/16: window-14 attention, global '
                 'attention in layers 2/5/8/11, decomposed rel-pos (RVSA-style mix)'),
}
DEFAULT_MODELS = [m for m in MODEL_ZOO if m not in ('rsvheat-base-cp', 'rsvheat-base-sac')]

# --tiny: same classes and code paths, toy widths (tests, laptops).
TINY_ARCHS = {
    'rsvheat-tiny': dict(arch=dict(depths=[1, 1, 1, 1], embed_dims=16)),
    'rsvheat-small': dict(arch=dict(depths=[1, 1, 2, 1], embed_dims=16)),
    'rsvheat-base': dict(arch=dict(depths=[1, 1, 2, 1], embed_dims=32)),
    'rsvheat-base-cp': dict(arch=dict(depths=[1, 1, 2, 1], embed_dims=32)),
    'rsvheat-base-sac': dict(arch=dict(depths=[1, 1, 2, 1], embed_dims=32)),
    'vit-b16': dict(arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)),
    'swin-b': dict(arch=dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1]),
                   window_size=2),
    'vitsam-b': dict(arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64,
                               global_attn_indexes=[1]), window_size=2),
}

TABLE_SIZES = ['224', '512', '1024', '512x1024']
SCALING_SIZES = ['512', '1024', '1536', '2048', '3072', '4096']
MODES = ('infer', 'train')
GiB = float(1 << 30)


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------
def parse_size(text):
    """``'1024'`` -> (1024, 1024); ``'512x1024'`` -> (H=512, W=1024)."""
    parts = str(text).lower().split('x')
    try:
        hw = [int(p) for p in parts]
    except ValueError:
        hw = []
    if len(hw) == 1:
        hw = hw * 2
    if len(hw) != 2 or min(hw) <= 0:
        raise argparse.ArgumentTypeError(
            f'{text!r} is not a size: use S (square) or HxW, e.g. 1024 or 512x1024')
    if hw[0] % 32 or hw[1] % 32:
        raise argparse.ArgumentTypeError(
            f'{text!r}: height and width must be multiples of 32, so that every backbone '
            '(patch 16, stride 32) sees whole patches and no model pays for padding')
    return tuple(hw)


def size_str(hw):
    return f'{hw[0]}' if hw[0] == hw[1] else f'{hw[0]}x{hw[1]}'


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Params, FLOPs, throughput and peak memory of RS-vHeat vs attention '
        'backbones', formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--models', nargs='+', default=DEFAULT_MODELS, metavar='MODEL',
                   help=f'models to measure, from {list(MODEL_ZOO)}')
    p.add_argument('--sizes', nargs='+', type=parse_size, metavar='SIZE',
                   help=f'image sizes, S or HxW (default {TABLE_SIZES}; '
                   f'with --scaling {SCALING_SIZES})')
    p.add_argument('--batch-sizes', nargs='+', type=int, default=None, metavar='B',
                   help='batch sizes (default 1; --scaling uses 1)')
    p.add_argument('--modes', nargs='+', default=list(MODES), choices=MODES)
    p.add_argument('--device', default=None,
                   help="'cpu', 'cuda' or 'cuda:N' (default: cuda if available)")
    p.add_argument('--threads', type=int, default=None,
                   help='torch intra-op threads (default: torch\'s choice)')
    p.add_argument('--warmup', type=int, default=2, help='untimed steps first (>= 1)')
    p.add_argument('--iters', type=int, default=5, help='timed steps')
    p.add_argument('--amp', choices=['none', 'fp16', 'bf16'], default='none',
                   help='autocast dtype (none = fp32)')
    p.add_argument('--tf32', action='store_true', help='allow TF32 matmuls/convs on CUDA')
    p.add_argument('--pretrain-size', default='224',
                   help="image size the models are built for (position embeddings, RS-vHeat "
                   "FVE/SCE grids), resized at run time to each size as in deployment; "
                   "'input' builds every model for each measured size instead")
    p.add_argument('--baseline', default='vit-b16',
                   help="model the ratios are relative to ('none' for no ratios)")
    p.add_argument('--tiny', action='store_true',
                   help='toy widths/depths of every model (tests; not for reporting)')
    p.add_argument('--flops-only', action='store_true',
                   help='parameters and FLOPs only (no real compute: any size, seconds)')
    p.add_argument('--scaling', action='store_true',
                   help='scaling study: batch 1, 512..4096 px, growth exponents')
    p.add_argument('--fit-min-side', type=float, default=1024,
                   help='fit growth exponents on sizes with sqrt(H*W) >= this')
    p.add_argument('--mem-budget', type=float, default=None, metavar='GiB',
                   help='skip a (model, size, mode) whose predicted peak memory of the device '
                   '(CUDA allocated, or CPU process RSS) exceeds this')
    p.add_argument('--time-budget', type=float, default=None, metavar='S',
                   help='skip a (model, size, mode) whose predicted step time exceeds this')
    p.add_argument('--profile-dct', action='store_true',
                   help='only time the GEMM vs the fast (pocketfft, torch.fft) DCTs per axis '
                   'length (POCKETFFT_MIN_LENGTH, FFT_MIN_LENGTH)')
    p.add_argument('--dct-lengths', nargs='+', type=int,
                   default=[64, 128, 256, 512, 768, 1024], help='--profile-dct axis lengths')
    p.add_argument('--dct-channels', type=int, default=128, help='--profile-dct channels')
    p.add_argument('--out-dir', default='work_dirs/benchmark', help='output folder')
    p.add_argument('--name', default=None,
                   help="output file stem (default 'benchmark', 'scaling' or 'dct_profile')")
    args = p.parse_args(argv)

    bad = [m for m in args.models if m not in MODEL_ZOO]
    if bad:
        p.error(f'--models: unknown {bad}; choose from {list(MODEL_ZOO)}')
    args.models = list(dict.fromkeys(args.models))
    if args.baseline.lower() == 'none':
        args.baseline = None
    elif args.baseline not in MODEL_ZOO:
        p.error(f'--baseline: unknown {args.baseline!r}; choose from {list(MODEL_ZOO)} or none')
    elif args.baseline not in args.models and not args.profile_dct:
        p.error(f'--baseline {args.baseline} is not among --models {args.models}: add it '
                'or pass --baseline none')
    if args.scaling:
        if args.batch_sizes not in (None, [1]):
            p.error('--batch-sizes: --scaling measures single images (batch 1)')
        args.batch_sizes = [1]
    args.batch_sizes = args.batch_sizes or [1]
    if min(args.batch_sizes) < 1:
        p.error(f'--batch-sizes must be >= 1, got {args.batch_sizes}')
    if args.sizes is None:
        args.sizes = [parse_size(s) for s in (SCALING_SIZES if args.scaling else TABLE_SIZES)]
    # Ascending pixel count: budget predictions extrapolate from smaller sizes.
    args.sizes = sorted(dict.fromkeys(args.sizes), key=lambda hw: (hw[0] * hw[1], hw))
    if args.warmup < 1:
        p.error(f'--warmup must be >= 1 (the first step fills caches and is recorded), '
                f'got {args.warmup}')
    if args.iters < 1:
        p.error(f'--iters must be >= 1, got {args.iters}')
    if args.threads is not None and args.threads < 1:
        p.error(f'--threads must be >= 1, got {args.threads}')
    if args.pretrain_size != 'input':
        try:
            args.pretrain_size = parse_size(args.pretrain_size)
        except argparse.ArgumentTypeError as e:
            p.error(f"--pretrain-size: {e} (or 'input')")
    for flag in ('mem_budget', 'time_budget'):
        v = getattr(args, flag)
        if v is not None and v <= 0:
            p.error(f'--{flag.replace("_", "-")} must be > 0, got {v}')
    if args.device is None:
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    try:
        dev = torch.device(args.device)
    except RuntimeError as e:
        p.error(f'--device: {e}')
    if dev.type not in ('cpu', 'cuda'):
        p.error(f"--device must be cpu or cuda[:N], got {args.device!r}")
    if dev.type == 'cuda' and not torch.cuda.is_available():
        p.error(f'--device {args.device}: CUDA is not available here')
    if dev.type == 'cpu' and args.amp == 'fp16':
        p.error('--amp fp16 is a CUDA setting; use bf16 on CPU')
    if dev.type == 'cpu' and bm.cpu_memory_method() is not None and not args.flops_only:
        p.error(f'cannot measure CPU memory here ({bm.cpu_memory_method()}); '
                'use --flops-only or a Linux machine')
    if min(args.dct_lengths) < 2 or args.dct_channels < 1:
        p.error('--dct-lengths must be >= 2 and --dct-channels >= 1')
    args.name = args.name or ('dct_profile' if args.profile_dct else
                              'scaling' if args.scaling else 'benchmark')
    return args


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------
def build_model(name, img_size, tiny=False):
    """Backbone ``name`` built for ``img_size`` (H, W), weights initialised."""
    family, arch, _ = MODEL_ZOO[name]
    extra = dict(TINY_ARCHS[name]) if tiny else {}
    arch = extra.pop('arch', arch)
    if family == 'rsvheat':
        from rsvheat_mm.models.backbones.rsvheat import RSVHeat
        model = RSVHeat(arch=arch, in_channels=dict(optical=3), pretrain_img_size=img_size,
                        out_indices=(0, 1, 2, 3), drop_path_rate=0.,
                        with_cp={'cp': True, 'sac': 'selective'}.get(name.rsplit('-', 1)[-1], False),
                        **extra)
    elif family == 'vit':
        from mmpretrain.models import VisionTransformer
        model = VisionTransformer(arch=arch, img_size=img_size, patch_size=16,
                                  out_type='featmap', drop_path_rate=0., **extra)
    elif family == 'swin':
        from mmpretrain.models import SwinTransformer
        model = SwinTransformer(arch=arch, img_size=img_size, out_indices=(0, 1, 2, 3),
                                drop_path_rate=0., **{'window_size': 7, **extra})
    elif family == 'vitsam':
        from mmpretrain.models import ViTSAM
        # out_channels=0: the bare ViT, without SAM's 256-channel neck.
        model = ViTSAM(arch=arch, img_size=img_size, patch_size=16, out_channels=0,
                       drop_path_rate=0., **extra)
    else:  # pragma: no cover - MODEL_ZOO is closed
        raise KeyError(name)
    # mmengine logs every parameter's init at INFO on the current logger.
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return model


def clear_model_caches(model):
    """Drop per-size caches (RS-vHeat's decays and DCT bases)."""
    for m in model.modules():
        if callable(getattr(m, 'clear_cache', None)):
            m.clear_cache()
    from rsvheat_mm.models.layers.heat_conduction import clear_heat_caches
    clear_heat_caches()


def make_step(model, mode, device, amp, no_grad_ctx=None):
    """``step(x)``: one inference or training step of ``model`` on ``x``.

    Inference runs under ``torch.inference_mode`` unless ``no_grad_ctx``
    (e.g. ``torch.no_grad``) is given: under inference mode composite ops
    such as ``scaled_dot_product_attention`` or ``matmul`` reach dispatch
    modes undecomposed, so FLOP counting and op recording use ``no_grad``
    (same kernels, same FLOPs).
    """
    dev_type = torch.device(device).type
    dtype = {'fp16': torch.float16, 'bf16': torch.bfloat16}.get(amp)

    def autocast():
        return torch.autocast(dev_type, dtype=dtype, enabled=dtype is not None)

    if mode == 'infer':
        grad_ctx = no_grad_ctx or torch.inference_mode

        def step(x):
            with grad_ctx(), autocast():
                model(x)
    else:

        def step(x):
            model.zero_grad(set_to_none=True)
            with autocast():
                outs = model(x)
            loss = sum(o.float().mean() for o in tree_leaves(outs) if torch.is_tensor(o))
            loss.backward()

    return step


class HCOShapes:
    """Records the feature map entering each RS-vHeat stage (pre-hooks).

    Used for the analytic share of the DCT GEMMs in the FLOP count: per heat
    conduction on a (B, H, W, C) map, forward + inverse DCT cost
    ``2 * 2*B*H*W*C*(H + W)`` FLOPs on the axes using GEMMs (``4 N^1.5 C``
    MACs for square maps). Axes on a fast-transform path (pocketfft or
    torch.fft) are counted by the FLOP counter's FFT formulas instead.
    """

    def __init__(self, model):
        self.calls = {}
        self.handles = []
        stages = getattr(model, 'stages', None)
        if stages is None or not all(hasattr(s, 'blocks') for s in stages):
            return
        for i, stage in enumerate(stages):
            dims = getattr(stage.blocks[0].op, 'dims', None) if len(stage.blocks) else None
            impl = getattr(stage.blocks[0].op, 'dct_impl', 'auto') if len(stage.blocks) else None

            def hook(mod, args, i=i, n=len(stage.blocks), dims=dims, impl=impl):
                x = args[0]
                if isinstance(x, list):  # RSVHeat hands activations on in a list
                    x = x[-1]
                # (B, H, W, C) channels-last; fall back to (B, C, H, W).
                b, h, w, c = x.shape if x.shape[-1] == dims else \
                    (x.shape[0], x.shape[2], x.shape[3], x.shape[1])
                # The per-axis choice the blocks make on this very tensor.
                gemm_axes = [a for a in (h, w) if axis_impl(a, x, impl or 'auto') == 'matmul']
                self.calls[i] = (b, h, w, c, n, gemm_axes)

            self.handles.append(stage.register_forward_pre_hook(hook))

    def gemm_flops(self, mode):
        total = 0
        for b, h, w, c, n_blocks, gemm_axes in self.calls.values():
            for axis_len in gemm_axes:
                total += 2 * (2 * b * h * w * c * axis_len) * n_blocks
        # Backward of x @ C^T w.r.t. x (the basis is constant) = one more GEMM.
        return total * (2 if mode == 'train' else 1)

    def remove(self):
        for h in self.handles:
            h.remove()
        self.handles = []


# ---------------------------------------------------------------------------
# One measurement
# ---------------------------------------------------------------------------
def is_oom(exc):
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    msg = str(exc).lower()
    return 'out of memory' in msg or "can't allocate memory" in msg


def count_cost(model, name, hw, batch, mode, args):
    """FLOPs (per image) and the fake-tensor memory estimate of one step."""
    device = torch.device(args.device)
    # Start from empty caches: the bases RS-vHeat caches during an
    # inference_mode step are inference tensors, which autograd refuses.
    clear_model_caches(model)
    model.train(mode == 'train')
    shape = (batch, 3) + tuple(hw)
    step = make_step(model, mode, device, args.amp, no_grad_ctx=torch.no_grad)
    shapes = HCOShapes(model) if MODEL_ZOO[name][0] == 'rsvheat' else None
    try:
        cost = bm.count_step_cost(lambda: step(torch.empty(shape, device=device)),
                                  warm=mode == 'infer', track_memory=args.mem_budget is not None)
    finally:
        if shapes is not None:
            shapes.remove()
        model.zero_grad(set_to_none=True)  # fake gradients
        clear_model_caches(model)  # fake decays / bases
    fft = sum(n for op, n in cost['flops_by_op'].items() if op in bm.FFT_OPS)
    rec = dict(flops_per_image=cost['flops'] / batch, macs_per_image=cost['flops'] / 2 / batch,
               flops_by_op={k: v / batch for k, v in cost['flops_by_op'].items()},
               fft_flops_per_image=fft / batch)
    rec['dct_flops_per_image'] = None if shapes is None or not shapes.calls else \
        (shapes.gemm_flops(mode) + fft) / batch
    if 'est_step_bytes' in cost:
        rec['est_step_bytes'] = cost['est_step_bytes']
    return rec


def held_bytes(device):
    """What the process holds now: CUDA allocated or CPU resident bytes."""
    if device.type == 'cuda':
        return torch.cuda.memory_allocated(device)
    return bm.process_memory()['VmRSS']


def budget_verdict(rec, history, args, device):
    """Reason to skip this measurement, or None.

    ``history``: earlier records of the same model, batch and mode (smaller
    sizes). Memory: what is held now plus the larger of the fake-tensor
    estimate of the bytes the step allocates (with a margin for what it
    cannot see: allocator rounding, library workspaces and, on CPU, the
    threads' scratch memory: x1.1 on CUDA, x1.25 + 512 MiB on CPU, where
    running out of memory kills the process) and a power-law extrapolation
    of the activation memory measured at the two largest smaller sizes.
    Time: the last measured step time scaled by the FLOP ratio.
    """
    for prev in history:
        if prev['status'] in ('skipped', 'oom'):
            return f'a smaller size was {prev["status"]} ({size_str(prev["size"])})'
    done = [r for r in history if r['status'] == 'ok']
    if args.mem_budget is not None:
        held = held_bytes(device)
        est = rec.get('est_step_bytes', 0)
        est = 1.1 * est if device.type == 'cuda' else 1.25 * est + 512 * bm.MiB
        ext = bm.extrapolate([r['pixels'] for r in done],
                             [r['mem_activation_bytes'] for r in done], rec['pixels'])
        predicted = held + max(est, ext or 0)
        rec['predicted_peak_bytes'] = int(predicted)
        if predicted > args.mem_budget * GiB:
            return (f'predicted peak {predicted / GiB:.1f} GiB > --mem-budget '
                    f'{args.mem_budget:g} GiB')
    if args.time_budget is not None and done:
        last = done[-1]
        predicted = last['sec_per_iter'] * rec['flops_per_image'] / last['flops_per_image']
        rec['predicted_sec_per_iter'] = predicted
        if predicted > args.time_budget:
            return f'predicted step {predicted:.0f} s > --time-budget {args.time_budget:g} s'
    return None


def measure(model, name, hw, batch, mode, args, history, logger):
    device = torch.device(args.device)
    rec = dict(model=name, size=list(hw), size_str=size_str(hw), pixels=hw[0] * hw[1],
               batch=batch, mode=mode, status='ok')
    rec['params'] = sum(p.numel() for p in model.parameters())
    rec.update(count_cost(model, name, hw, batch, mode, args))
    if args.flops_only:
        rec['status'] = 'flops-only'
        return rec
    reason = budget_verdict(rec, history, args, device)
    if reason is not None:
        rec.update(status='skipped', skip_reason=reason)
        logger.info(f'  skipped: {reason}')
        return rec

    model.train(mode == 'train')
    step = make_step(model, mode, device, args.amp)
    first_step = make_step(model, mode, device, args.amp, no_grad_ctx=torch.no_grad)
    recorder = bm.OpRecorder()
    x = None
    try:
        x = torch.randn((batch, 3) + tuple(hw), device=device)
        with recorder:  # first warm-up: fills caches, records the ops dispatched
            first_step(x)
        for _ in range(args.warmup - 1):
            step(x)
        model.zero_grad(set_to_none=True)  # gradients are allocated inside the step
        with bm.StepMemory(device) as mem:
            step(x)
        if device.type == 'cpu':
            # Peak of live tensor allocations (CPU analogue of CUDA's
            # max_memory_allocated): independent of the allocator's state,
            # which earlier (e.g. training) steps leave behind in the RSS.
            model.zero_grad(set_to_none=True)
            with bm.LiveBytesMode() as live:
                step(x)
            rec['mem_tensor_peak_bytes'] = live.peak
        model.zero_grad(set_to_none=True)
        timing = bm.time_step(lambda: step(x), device, warmup=0, iters=args.iters)
    except Exception as e:  # noqa: BLE001 - only out-of-memory is recorded
        if not is_oom(e):
            raise
        rec.update(status='oom', skip_reason=f'out of memory: {str(e).splitlines()[0][:200]}')
        logger.info(f'  {rec["skip_reason"]}')
        return rec
    finally:
        del x
        model.zero_grad(set_to_none=True)
        bm.release_memory(device)
    rec.update(mem.as_dict())
    rec['attention'] = bm.summarize_attention_ops(recorder.ops)
    rec['attention_ops'] = sorted(o for o in recorder.ops
                                  if 'attention' in o or 'softmax' in o or 'bmm' in o)
    rec.update(sec_per_iter=timing['median'], sec_per_iter_mean=timing['mean'],
               sec_per_iter_std=timing['std'], iter_times=timing['iter_times'],
               sec_per_image=timing['median'] / batch, images_per_s=batch / timing['median'])
    return rec


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------
def environment(args):
    dev = torch.device(args.device)
    if dev.type == 'cuda':
        props = torch.cuda.get_device_properties(dev)
        device = f'{props.name} ({props.total_memory / GiB:.0f} GiB)'
    else:
        device = platform.processor() or platform.machine()
        try:
            with open('/proc/cpuinfo') as f:
                device = next(line.split(':', 1)[1].strip() for line in f
                              if line.startswith('model name'))
        except (OSError, StopIteration):
            pass
        device += f', {os.cpu_count()} logical cores'
    from importlib.metadata import PackageNotFoundError, version
    versions = {'torch': torch.__version__}
    for pkg in ('mmengine', 'mmcv', 'mmpretrain'):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    commit = None
    try:
        commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, text=True,
                                capture_output=True, timeout=10).stdout.strip() or None
        dirty = subprocess.run(['git', '--no-optional-locks', 'diff', '--quiet', 'HEAD', '--',
                                'rsvheat_mm'], cwd=ROOT, capture_output=True, timeout=30)
        if commit and dirty.returncode == 1:
            commit += ' (+ uncommitted changes in rsvheat_mm/)'
    except (OSError, subprocess.SubprocessError):
        pass
    return dict(
        date=datetime.datetime.now().isoformat(timespec='seconds'),
        command='python tools/analysis/benchmark.py ' + ' '.join(sys.argv[1:]),
        device=device, device_type=dev.type, threads=torch.get_num_threads(),
        amp=args.amp, tf32=bool(args.tf32), versions=versions, commit=commit,
        pretrain_size=args.pretrain_size if args.pretrain_size == 'input' else
        size_str(args.pretrain_size), tiny=bool(args.tiny), warmup=args.warmup,
        iters=args.iters, baseline=args.baseline)


def add_ratios(results, baseline):
    """``ratio_*`` = model / baseline at the same size, batch and mode."""
    if baseline is None:
        return
    base = {(tuple(r['size']), r['batch'], r['mode']): r for r in results
            if r['model'] == baseline}
    keys = dict(ratio_flops='flops_per_image', ratio_images_per_s='images_per_s',
                ratio_mem_activation='mem_activation_bytes', ratio_mem_peak='mem_peak_bytes',
                ratio_mem_tensor_peak='mem_tensor_peak_bytes')
    for r in results:
        b = base.get((tuple(r['size']), r['batch'], r['mode']))
        for rk, k in keys.items():
            v, bv = r.get(k), (b or {}).get(k)
            r[rk] = v / bv if v is not None and bv else None


def _fmt(v, digits=2, scale=1.0):
    if v is None:
        return '—'
    v = v / scale
    if abs(v) >= 100:
        return f'{v:,.0f}'
    return f'{v:.{digits}f}'


def _ratio(v):
    return '—' if v is None else f'{v:.2f}×'


MODE_TITLES = dict(infer='Inference (eval, torch.inference_mode)',
                   train='Training step (train mode, forward + backward of a scalar loss, '
                   'gradients allocated inside the step)')


def env_lines(env):
    return [
        f'- date: {env["date"]}; commit: {env["commit"]}',
        f'- device: {env["device"]}; torch threads: {env["threads"]}; amp: {env["amp"]}'
        f'{"; TF32 on" if env["tf32"] else ""}',
        f'- versions: ' + ', '.join(f'{k} {v}' for k, v in env['versions'].items()),
        f'- models built for {env["pretrain_size"]} px (position embeddings / FVE+SCE), '
        f'resized at run time; warm-up {env["warmup"]}, timed iterations {env["iters"]} '
        '(median)' + ('; **--tiny toy models, not for reporting**' if env['tiny'] else ''),
        f'- command: `{env["command"]}`',
    ]


def markdown_table(results, env, baseline):
    out = ['# Backbone benchmark', ''] + env_lines(env) + ['']
    method = next((r['mem_method'] for r in results if r.get('mem_method')),
                  'see docs/benchmark.md')
    out.append('FLOPs per image from `FlopCounterMode` (1 MAC = 2 FLOPs; GEMMs, convolutions, '
               'attention, FFTs; DCT = the share of RS-vHeat\'s heat-conduction DCTs; † = '
               'includes fast-transform DCT FLOPs counted analytically: 2.5 n log2 n per '
               'length-n pocketfft DCT, 5 n log2 n per complex FFT). Memory: peak of one step and activation = peak − memory held '
               f'before the step ({method}).')
    if baseline:
        out.append(f'Ratios: model / {baseline} at the same size, batch and mode '
                   '(img/s ×: above 1 is faster; FLOPs × and mem ×: below 1 is cheaper).')
    out.append('')
    tensor_col = any(r.get('mem_tensor_peak_bytes') is not None for r in results)
    head = ['model', 'size (HxW)', 'batch', 'params (M)', 'GFLOPs/img', 'GMACs/img',
            'DCT GFLOPs/img', 'ms/img', 'img/s', 'peak mem (MiB)', 'act. mem (MiB)']
    if tensor_col:
        head.append('tensor peak (MiB)')
    if baseline:
        head += ['FLOPs ×', 'img/s ×', 'act. mem ×'] + (['tensor peak ×'] if tensor_col else [])
    head.append('attention / status')
    for mode in MODES:
        rows = [r for r in results if r['mode'] == mode]
        if not rows:
            continue
        out += [f'## {MODE_TITLES[mode]}', '', '| ' + ' | '.join(head) + ' |',
                '|' + '---|' * len(head)]
        rows.sort(key=lambda r: (r['pixels'], tuple(r['size']), r['batch'],
                                 list(MODEL_ZOO).index(r['model'])))
        for r in rows:
            cells = [r['model'], size_str(r['size']), str(r['batch']),
                     _fmt(r['params'], 1, 1e6), _fmt(r['flops_per_image'], 2, 1e9),
                     _fmt(r['macs_per_image'], 2, 1e9),
                     _fmt(r.get('dct_flops_per_image'), 2, 1e9) +
                     ('†' if r.get('fft_flops_per_image') else ''),
                     _fmt(r.get('sec_per_image'), 2, 1e-3), _fmt(r.get('images_per_s'), 2),
                     _fmt(r.get('mem_peak_bytes'), 0, bm.MiB),
                     _fmt(r.get('mem_activation_bytes'), 0, bm.MiB)]
            if tensor_col:
                cells.append(_fmt(r.get('mem_tensor_peak_bytes'), 0, bm.MiB))
            if baseline:
                cells += [_ratio(r.get('ratio_flops')), _ratio(r.get('ratio_images_per_s')),
                          _ratio(r.get('ratio_mem_activation'))]
                if tensor_col:
                    cells.append(_ratio(r.get('ratio_mem_tensor_peak')))
            note = r.get('attention', '') if r['status'] == 'ok' else \
                f'{r["status"]}: {r.get("skip_reason", "")}'.rstrip(': ')
            cells.append(note)
            out.append('| ' + ' | '.join(cells) + ' |')
        out.append('')
    out.append('Models: ' + '; '.join(f'`{m}` = {MODEL_ZOO[m][2]}'
                                       for m in dict.fromkeys(r['model'] for r in results)) + '.')
    return '\n'.join(out) + '\n'


METRICS = [('flops_per_image', 'GFLOPs / image', 1e9, 'ratio_flops'),
           ('images_per_s', 'images / s', 1.0, 'ratio_images_per_s'),
           ('mem_activation_bytes', 'activation memory (MiB)', bm.MiB, 'ratio_mem_activation')]


def _figure():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def _log_axes(ax, sizes):
    """Log-log axes, x ticks at the measured sizes, y labelled at 1-1.5-2-3-5-7."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.xaxis.set_major_locator(NullLocator())
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks([p for p, _ in sizes])
    ax.set_xticklabels([s for _, s in sizes], rotation=30, fontsize=8)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f'{v:g}'))
    ax.tick_params(axis='y', labelsize=8)
    ax.grid(alpha=0.3)


def _png(fig, plt):
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=110)
    plt.close(fig)
    return buf.getvalue()


def plot_table(results, baseline, title):
    """Per mode: each metric against pixel count, then its ratio to the baseline."""
    plt = _figure()
    modes = [m for m in MODES if any(r['mode'] == m for r in results)]
    n_rows = len(modes) * (2 if baseline else 1)
    fig, axes = plt.subplots(n_rows, len(METRICS), figsize=(5.2 * len(METRICS), 3.6 * n_rows),
                             squeeze=False)
    sizes = sorted({(r['pixels'], size_str(r['size'])) for r in results})
    batches = sorted({r['batch'] for r in results})
    styles = ['-', '--', ':', '-.']
    for mi, mode in enumerate(modes):
        for ci, (key, label, scale, rkey) in enumerate(METRICS):
            kinds = [(key, label, scale, axes[mi * (2 if baseline else 1), ci])]
            if baseline:
                kinds.append((rkey, f'{label}: × {baseline}', 1.0, axes[mi * 2 + 1, ci]))
            for k, lab, sc, ax in kinds:
                for model in dict.fromkeys(r['model'] for r in results):
                    for bi, b in enumerate(batches):
                        pts = sorted((r['pixels'], r[k] / sc) for r in results
                                     if r['model'] == model and r['batch'] == b and
                                     r['mode'] == mode and r.get(k) is not None)
                        if not pts:
                            continue
                        label_ = model if len(batches) == 1 else f'{model} (bs {b})'
                        ax.plot(*zip(*pts), marker='o', linestyle=styles[bi % 4], label=label_)
                _log_axes(ax, sizes)  # ratios too: 2x and 0.5x are equally far from 1
                if k != key:
                    ax.axhline(1.0, color='grey', lw=0.8)
                ax.set_title(f'{mode}: {lab}', fontsize=10)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    top = 1 - 0.9 / fig.get_figheight()  # room for the title and the legend, in inches
    if handles:
        fig.legend(handles, labels, loc='lower center', bbox_to_anchor=(0.5, top),
                   ncol=min(6, len(labels)), fontsize=8, frameon=False)
    fig.suptitle(title, y=1 - 0.15 / fig.get_figheight(), va='top', fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, top))
    return _png(fig, plt)


SCALING_METRICS = [('flops_per_image', 'GFLOPs', 1e9), ('sec_per_image', 's / image', 1.0),
                   ('mem_activation_bytes', 'activation memory (MiB)', bm.MiB)]


def scaling_exponents(results, min_side):
    """Growth exponent in N per (model, mode, metric), fitted above ``min_side``."""
    out = {}
    for model in dict.fromkeys(r['model'] for r in results):
        for mode in MODES:
            rows = [r for r in results if r['model'] == model and r['mode'] == mode]
            if not rows:
                continue
            ent = {}
            for key, _, _ in SCALING_METRICS:
                ent[key] = bm.growth_exponent([r['pixels'] for r in rows],
                                              [r.get(key) for r in rows], min_side**2)
            ent['measured_sizes'] = [size_str(r['size']) for r in rows if r['status'] == 'ok']
            ent['skipped'] = {size_str(r['size']): r.get('skip_reason', r['status'])
                              for r in rows if r['status'] in ('skipped', 'oom')}
            out.setdefault(model, {})[mode] = ent
    return out


def markdown_scaling(results, exps, env, min_side):
    out = ['# Scaling study (single image)', ''] + env_lines(env) + ['']
    out.append(f'Growth exponent a in N^a, N = H·W pixels: least-squares log-log slope over the '
               f'sizes with sqrt(N) >= {min_side:g} px (— = fewer than two such sizes). '
               'Square-map ideal: linear-cost layers a = 1, dense-GEMM DCT a = 1.5, global '
               'attention a = 2 (reached only once attention dominates).')
    out += ['', '| model | mode | FLOPs a | time a | act. mem a | measured sizes | skipped |',
            '|---|---|---|---|---|---|---|']
    for model, modes in exps.items():
        for mode, e in modes.items():
            skipped = '; '.join(f'{s}: {why}' for s, why in e['skipped'].items()) or '—'
            out.append(f'| {model} | {mode} | {_fmt(e["flops_per_image"])} | '
                       f'{_fmt(e["sec_per_image"])} | {_fmt(e["mem_activation_bytes"])} | '
                       f'{", ".join(e["measured_sizes"]) or "—"} | {skipped} |')
    out += ['', '## Measurements', '',
            '| model | mode | size | GFLOPs | s/img | peak mem (MiB) | act. mem (MiB) | status |',
            '|---|---|---|---|---|---|---|---|']
    for r in sorted(results, key=lambda r: (list(MODEL_ZOO).index(r['model']),
                                            MODES.index(r['mode']), r['pixels'])):
        status = r['status'] if r['status'] in ('ok', 'flops-only') else \
            f'{r["status"]}: {r.get("skip_reason", "")}'
        out.append(f'| {r["model"]} | {r["mode"]} | {size_str(r["size"])} | '
                   f'{_fmt(r["flops_per_image"], 1, 1e9)} | {_fmt(r.get("sec_per_image"), 3)} | '
                   f'{_fmt(r.get("mem_peak_bytes"), 0, bm.MiB)} | '
                   f'{_fmt(r.get("mem_activation_bytes"), 0, bm.MiB)} | {status} |')
    skipped = [r for r in results if r['status'] in ('skipped', 'oom')]
    out += ['', f'Skipped: {len(skipped)} measurement(s)' +
            (': ' + '; '.join(f'{r["model"]} {r["mode"]} {size_str(r["size"])} '
                              f'({r.get("skip_reason", r["status"])})' for r in skipped)
             if skipped else '.')]
    return '\n'.join(out) + '\n'


def plot_scaling(results, exps, min_side, title):
    plt = _figure()
    modes = [m for m in MODES if any(r['mode'] == m for r in results)]
    fig, axes = plt.subplots(len(modes), len(SCALING_METRICS),
                             figsize=(5.2 * len(SCALING_METRICS), 3.8 * len(modes)),
                             squeeze=False)
    sizes = sorted({(r['pixels'], size_str(r['size'])) for r in results})
    for mi, mode in enumerate(modes):
        for ci, (key, label, scale) in enumerate(SCALING_METRICS):
            ax = axes[mi, ci]
            for model in exps:
                pts = sorted((r['pixels'], r[key] / scale) for r in results
                             if r['model'] == model and r['mode'] == mode and
                             r.get(key) is not None and r[key] > 0)
                if not pts:
                    continue
                a = exps[model].get(mode, {}).get(key)
                line, = ax.plot(*zip(*pts), marker='o',
                                label=model + ('' if a is None else f' (a={a:.2f})'))
                fit = [(p, v) for p, v in pts if p >= min_side**2]
                if a is not None and fit:
                    # The fitted power law through the fitted points' centroid.
                    lx = sum(math.log(p) for p, _ in fit) / len(fit)
                    ly = sum(math.log(v) for _, v in fit) / len(fit)
                    xs = [fit[0][0], fit[-1][0]]
                    ax.plot(xs, [math.exp(ly + a * (math.log(x) - lx)) for x in xs],
                            color=line.get_color(), lw=3, alpha=0.25)
            _log_axes(ax, sizes)
            ax.set_title(f'{mode}: {label}', fontsize=10)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig, plt)


def write_json(path, payload):
    atomic_write(json.dumps(payload, indent=1, default=str), path)


# ---------------------------------------------------------------------------
# DCT profile
# ---------------------------------------------------------------------------
def profile_dct(args, logger):
    """Time the heat conduction per DCT implementation for square maps.

    GEMMs against the cached bases, torch.fft (Makhoul) and, on CPU,
    pocketfft (scipy.fft); the shortest axis length from which a fast
    transform wins at every longer length tried is suggested for
    ``POCKETFFT_MIN_LENGTH`` / ``FFT_MIN_LENGTH`` of ``heat_conduction.py``.
    """
    from rsvheat_mm.models.layers.heat_conduction import heat_conduction
    device = torch.device(args.device)
    impls = ['matmul', 'fft'] + (['scipy'] if device.type == 'cpu' else [])
    b, c = args.batch_sizes[0], args.dct_channels
    rows = []
    for n in sorted(set(args.dct_lengths)):
        row = dict(length=n, batch=b, channels=c)
        try:
            u = torch.randn(b, n, n, c, device=device)
            decay = torch.rand(n, n, c, device=device)
            for impl in impls:
                with torch.inference_mode():
                    t = bm.time_step(lambda: heat_conduction(u, decay, True, impl), device,
                                     warmup=args.warmup, iters=args.iters)
                row[f'{impl}_ms'] = t['median'] * 1e3
            for impl in impls[1:]:
                row[f'{impl}_speedup'] = row['matmul_ms'] / row[f'{impl}_ms']
        except Exception as e:  # noqa: BLE001
            if not is_oom(e):
                raise
            row['status'] = 'oom'
        finally:
            u = decay = None
            bm.release_memory(device)
        logger.info(f'DCT n={n}: ' + ', '.join(f'{k} {v:.3g}' for k, v in row.items()
                                               if isinstance(v, float)))
        rows.append(row)

    def crossover(impl):
        timed = [r for r in rows if f'{impl}_speedup' in r]
        for i, r in enumerate(timed):
            if all(t[f'{impl}_speedup'] > 1 for t in timed[i:]):
                return r['length']
        return None

    suggested = {impl: crossover(impl) for impl in impls[1:]}
    names = dict(matmul='GEMM', fft='torch.fft', scipy='pocketfft')
    env = environment(args)
    lines = ['# DCT implementation profile', ''] + env_lines(env) + [
        '', f'Heat conduction (forward + inverse 2-D DCT, decay multiply) on a '
        f'(B={b}, n, n, C={c}) channels-last map; median of {args.iters}.', '',
        '| n | ' + ' | '.join(f'{names[i]} (ms)' for i in impls) + ' | ' +
        ' | '.join(f'{names[i]} speed-up' for i in impls[1:]) + ' |',
        '|---' * (2 * len(impls)) + '|']
    for r in rows:
        lines.append(f'| {r["length"]} | ' + ' | '.join(_fmt(r.get(f'{i}_ms')) for i in impls) +
                     ' | ' + ' | '.join(_ratio(r.get(f'{i}_speedup')) for i in impls[1:]) + ' |')
    lines.append('')
    for impl, const in (('scipy', 'POCKETFFT_MIN_LENGTH'), ('fft', 'FFT_MIN_LENGTH')):
        if impl in suggested:
            n = suggested[impl]
            lines.append(f'Suggested `{const}[{device.type!r}]`: ' +
                         (f'{n}' if n else 'none of the lengths tried (keep the GEMM)'))
    stem = osp.join(args.out_dir, args.name)
    write_json(stem + '.json', dict(env=env, rows=rows, suggested_min_length=suggested))
    atomic_write('\n'.join(lines) + '\n', stem + '.md')
    logger.info(f'wrote {stem}.md/.json')
    return dict(rows=rows, suggested_min_length=suggested)


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------
def main(argv=None):
    args = parse_args(argv)
    from mmengine.logging import MMLogger
    logger = MMLogger.get_instance('rsvheat_benchmark', logger_name='rsvheat_benchmark',
                                   log_level='INFO') \
        if not MMLogger.check_instance_created('rsvheat_benchmark') else \
        MMLogger.get_instance('rsvheat_benchmark')
    # Global settings changed for the run, restored afterwards (main() is
    # also called in-process, e.g. by the tests).
    saved = (torch.get_num_threads(), torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    device = torch.device(args.device)
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    # Everything that exists now lives through the run: keep it out of the
    # full garbage collections before every memory measurement.
    gc.collect()
    gc.freeze()
    try:
        if args.profile_dct:
            return profile_dct(args, logger)
        return run_benchmark(args, logger)
    finally:
        gc.unfreeze()
        torch.set_num_threads(saved[0])
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[1:]


def run_benchmark(args, logger):
    device = torch.device(args.device)
    env = environment(args)
    stem = osp.join(args.out_dir, args.name)
    results = []
    total = len(args.models) * len(args.sizes) * len(args.batch_sizes) * len(args.modes)
    done = 0
    for name in args.models:
        model = None
        for hw in args.sizes:
            build_hw = hw if args.pretrain_size == 'input' else args.pretrain_size
            if model is None or getattr(model, '_bench_built_for', None) != build_hw:
                model = None
                bm.release_memory(device)
                model = build_model(name, build_hw, args.tiny).to(device)
                model._bench_built_for = build_hw
            for batch in args.batch_sizes:
                for mode in args.modes:
                    done += 1
                    logger.info(f'[{done}/{total}] {name} {size_str(hw)} bs={batch} {mode}')
                    history = [r for r in results if r['model'] == name and
                               r['batch'] == batch and r['mode'] == mode]
                    rec = measure(model, name, hw, batch, mode, args, history, logger)
                    results.append(rec)
                    if rec['status'] == 'ok':
                        logger.info(
                            f'  {rec["flops_per_image"] / 1e9:.4g} GFLOPs/img, '
                            f'{rec["sec_per_image"] * 1e3:.1f} ms/img, '
                            f'{rec["images_per_s"]:.2f} img/s, act. mem '
                            f'{rec["mem_activation_bytes"] / bm.MiB:.0f} MiB, tensor peak '
                            f'{(rec.get("mem_tensor_peak_bytes") or 0) / bm.MiB:.0f} MiB, '
                            f'{rec["attention"]}')
                    elif rec['status'] == 'flops-only':
                        logger.info(f'  {rec["flops_per_image"] / 1e9:.4g} GFLOPs/img')
                    write_json(stem + '.json', dict(env=env, results=results, complete=False))
        # Free the model and every cache before the next one is built.
        clear_model_caches(model)
        model = None
        bm.release_memory(device)

    add_ratios(results, args.baseline)
    payload = dict(env=env, results=results, complete=True)
    title = f'{env["device"]}, {env["threads"]} threads, amp {env["amp"]}'
    if args.scaling:
        exps = scaling_exponents(results, args.fit_min_side)
        payload.update(exponents=exps, fit_min_side=args.fit_min_side)
        md = markdown_scaling(results, exps, env, args.fit_min_side)
        png = plot_scaling(results, exps, args.fit_min_side, title)
    else:
        md = markdown_table(results, env, args.baseline)
        png = plot_table(results, args.baseline, title)
    write_json(stem + '.json', payload)
    atomic_write(md, stem + '.md')
    atomic_write(png, stem + '.png')
    logger.info(f'wrote {stem}.md, {stem}.json, {stem}.png')
    return payload


if __name__ == '__main__':
    main()
