#!/usr/bin/env python
"""Benchmark RS-vHeat against attention backbones (docs/benchmark.md).

For each model (rebuilt for each, freed between models) at each image size,
batch size and mode (``infer``: eval + ``torch.inference_mode``; ``train``:
train mode, forward + backward of a scalar loss, gradients included), in one
process:

* **parameters** of the backbone as built (see ``--pretrain-size``);
* **FLOPs and MACs** per image, counted by
  ``torch.utils.flop_counter.FlopCounterMode`` while the step runs on fake
  tensors, with the FLOPs of RS-vHeat's DCTs as the model reports them;
* **time**: warm-up, then timed iterations (CUDA synchronised);
* **memory** of one step: peak, activation (= peak minus what was held
  before), allocated tensor peak; for inference also the **resident growth of
  a fresh process** from before its first forward (caches included);
* the **attention kernel** each model really dispatched.

The measuring code is the package ``benchmarking`` beside this script (see
its ``__init__``). Outputs (``--out-dir``): ``<name>.md`` (tables with ratios
to ``--baseline``), ``<name>.json`` (every number; rewritten after each
measurement) and ``<name>.png``. ``--scaling`` runs single images from 512 to
4096 px and fits growth exponents; ``--mem-budget``, ``--time-budget`` and
``--run-budget`` skip what is predicted not to fit. ``--profile-dct`` times
the GEMM against the fast DCTs.

Examples::

    # the table (idle machine; CUDA if present)
    python tools/analysis/benchmark.py --sizes 224 512 1024 512x1024 \\
        --batch-sizes 1 8 --modes infer train --out-dir work_dirs/benchmark
    # training memory of the RS-vHeat-B variants against ViT-B/16, bf16 autocast
    python tools/analysis/benchmark.py --models rsvheat-base rsvheat-base-autograd \\
        rsvheat-base-cp rsvheat-base-sac vit-b16 --sizes 1024 --modes train --amp bf16
    # the scaling study
    python tools/analysis/benchmark.py --scaling --mem-budget 70 \\
        --out-dir work_dirs/benchmark
    # quick check on a laptop
    python tools/analysis/benchmark.py --tiny --sizes 64 --iters 2
"""
import argparse
import gc
import os.path as osp
import sys
import time

import torch

from benchmarking import zoo
from benchmarking.dct_profile import profile_dct
from benchmarking.environment import cpu_amp_support, environment
from benchmarking.measure import measure, size_str
from benchmarking.memory import MiB, cpu_memory_method, release_memory
from benchmarking.plots import plot_scaling, plot_table
from benchmarking.report import (MODES, add_ratios, markdown_scaling, markdown_table,
                                 scaling_exponents, write_json, write_text)
from benchmarking.resident import FreshProcess

MODEL_ZOO = zoo.MODEL_ZOO
DEFAULT_MODELS = zoo.DEFAULT_MODELS
TABLE_SIZES = ['224', '512', '1024', '512x1024']
SCALING_SIZES = ['512', '1024', '1536', '2048', '3072', '4096']


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


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Params, FLOPs, throughput and memory of RS-vHeat vs attention '
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
    p.add_argument('--warmup', type=int, default=2,
                   help='untimed steps on the measured path, after one step that records '
                   'the ops (>= 1)')
    p.add_argument('--iters', type=int, default=5, help='timed steps')
    p.add_argument('--amp', choices=['none', 'fp16', 'bf16'], default='none',
                   help='autocast dtype for inference and the training step, on CPU or CUDA '
                   '(none = fp32). On CPUs without avx512_bf16/amx_bf16 (fp16: '
                   'avx512_fp16/amx_fp16) PyTorch emulates it, slowly: the report says so')
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
    p.add_argument('--fresh-forwards', type=int, default=3, metavar='N',
                   help='inference: resident-memory growth of a fresh process over N forwards '
                   '(one subprocess per model, size and batch); 0 skips it')
    p.add_argument('--scaling', action='store_true',
                   help='scaling study: batch 1, 512..4096 px, growth exponents')
    p.add_argument('--fit-min-side', type=float, default=1024,
                   help='fit growth exponents on sizes with sqrt(H*W) >= this')
    p.add_argument('--mem-budget', type=float, default=None, metavar='GiB',
                   help='skip a (model, size, mode) whose predicted peak memory of the device '
                   '(CUDA allocated, or CPU process RSS) exceeds this')
    p.add_argument('--time-budget', type=float, default=None, metavar='S',
                   help='skip a (model, size, mode) whose predicted step time exceeds this')
    p.add_argument('--run-budget', type=float, default=None, metavar='S',
                   help='wall time for the whole run: skip a measurement predicted to end '
                   'after it (the report lists what was skipped)')
    p.add_argument('--order', choices=['model', 'size'], default='model',
                   help="'model': every size of one model, then the next (a model is built "
                   "once); 'size': every model at one size, then the next size (with "
                   "--run-budget the largest sizes are cut for all models alike)")
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
    args.argv = list(sys.argv[1:] if argv is None else argv)

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
        p.error(f'--warmup must be >= 1 (fills caches and thread pools on the measured '
                f'path), got {args.warmup}')
    if args.iters < 1:
        p.error(f'--iters must be >= 1, got {args.iters}')
    if args.fresh_forwards < 0:
        p.error(f'--fresh-forwards must be >= 0, got {args.fresh_forwards}')
    if args.threads is not None and args.threads < 1:
        p.error(f'--threads must be >= 1, got {args.threads}')
    if args.pretrain_size != 'input':
        try:
            args.pretrain_size = parse_size(args.pretrain_size)
        except argparse.ArgumentTypeError as e:
            p.error(f"--pretrain-size: {e} (or 'input')")
    for flag in ('mem_budget', 'time_budget', 'run_budget'):
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
    if dev.type == 'cpu' and cpu_memory_method() is not None and not args.flops_only \
            and not args.profile_dct:
        p.error(f'cannot measure CPU memory here ({cpu_memory_method()}); '
                'use --flops-only or a Linux machine')
    if min(args.dct_lengths) < 2 or args.dct_channels < 1:
        p.error('--dct-lengths must be >= 2 and --dct-channels >= 1')
    args.name = args.name or ('dct_profile' if args.profile_dct else
                              'scaling' if args.scaling else 'benchmark')
    return args


def get_logger():
    from mmengine.logging import MMLogger
    if MMLogger.check_instance_created('rsvheat_benchmark'):
        return MMLogger.get_instance('rsvheat_benchmark')
    return MMLogger.get_instance('rsvheat_benchmark', logger_name='rsvheat_benchmark',
                                 log_level='INFO')


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------
def main(argv=None):
    args = parse_args(argv)
    logger = get_logger()
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
    if device.type == 'cpu':
        native, note = cpu_amp_support(args.amp)
        if not native:
            logger.warning(f'--amp {args.amp}: {note}')
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


def _plan(args):
    """(model, size) in the order of ``--order``."""
    if args.order == 'size':
        return [(name, hw) for hw in args.sizes for name in args.models]
    return [(name, hw) for name in args.models for hw in args.sizes]


def _log_result(logger, rec):
    if rec['status'] == 'ok':
        fresh = rec.get('mem_fresh_rss_growth_bytes')
        logger.info(
            f'  {rec["flops_per_image"] / 1e9:.4g} GFLOPs/img, '
            f'{rec["sec_per_image"] * 1e3:.1f} ms/img, {rec["images_per_s"]:.2f} img/s, '
            f'act. mem {rec["mem_activation_bytes"] / MiB:.0f} MiB, tensor peak '
            f'{(rec.get("mem_tensor_peak_bytes") or 0) / MiB:.0f} MiB'
            + ('' if fresh is None else f', fresh RSS growth {fresh / MiB:.0f} MiB')
            + (f', fresh process failed: {rec["fresh_error"]}' if 'fresh_error' in rec else '')
            + f', {rec["attention"]}')
    elif rec['status'] == 'flops-only':
        logger.info(f'  {rec["flops_per_image"] / 1e9:.4g} GFLOPs/img')


def run_benchmark(args, logger):
    device = torch.device(args.device)
    env = environment(args)
    stem = osp.join(args.out_dir, args.name)
    deadline = None if args.run_budget is None else time.monotonic() + args.run_budget
    fresh = FreshProcess(args) if args.fresh_forwards and not args.flops_only else None
    results = []
    try:
        plan = _plan(args)
        total = len(plan) * len(args.batch_sizes) * len(args.modes)
        done = 0
        model, built = None, None
        for name, hw in plan:
            build_hw = hw if args.pretrain_size == 'input' else args.pretrain_size
            if built != (name, build_hw):
                if model is not None:  # free the model and every cache first
                    zoo.clear_model_caches(model)
                    model = None
                release_memory(device)
                model = zoo.build_model(name, build_hw, args.tiny).to(device)
                built = (name, build_hw)
            for batch in args.batch_sizes:
                for mode in args.modes:
                    done += 1
                    logger.info(f'[{done}/{total}] {name} {size_str(hw)} bs={batch} {mode}')
                    history = [r for r in results if r['model'] == name and
                               r['batch'] == batch and r['mode'] == mode]
                    others = [r for r in results if r['mode'] == mode]
                    if deadline is not None and time.monotonic() >= deadline:
                        rec = dict(model=name, size=list(hw), size_str=size_str(hw),
                                   pixels=hw[0] * hw[1], batch=batch, mode=mode, amp=args.amp,
                                   status='skipped', flops_per_image=None, macs_per_image=None,
                                   params=sum(p.numel() for p in model.parameters()),
                                   skip_reason='--run-budget used up')
                        logger.info('  skipped: --run-budget used up')
                    else:
                        rec = measure(model, name, hw, batch, mode, args, history, logger,
                                      others=others, deadline=deadline, fresh=fresh)
                    results.append(rec)
                    _log_result(logger, rec)
                    write_json(stem + '.json', dict(env=env, results=results, complete=False))
        if model is not None:
            zoo.clear_model_caches(model)
            model = None
        release_memory(device)
    finally:
        if fresh is not None:
            fresh.close()

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
    write_text(stem + '.md', md)
    write_text(stem + '.png', png)
    skipped = [r for r in results if r['status'] in ('skipped', 'oom')]
    for r in skipped:
        logger.info(f'skipped: {r["model"]} {r["mode"]} {size_str(r["size"])} bs {r["batch"]}: '
                    f'{r.get("skip_reason", r["status"])}')
    logger.info(f'wrote {stem}.md, {stem}.json, {stem}.png')
    return payload


if __name__ == '__main__':
    main()
