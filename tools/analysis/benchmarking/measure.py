"""One measurement: a model at one size, batch and mode.

:func:`measure` counts the step's FLOPs on fake tensors, decides from the
budgets whether to run it, then runs it for real: warm-up (the first warm-up
step records the ops dispatched), one step for the peak memory, on CPU one
for the allocator's tensor peak, then the timed steps. Inference rows get
the resident-memory growth of a fresh process (:mod:`.resident`) on top.
"""
import time

import torch
from torch.utils._pytree import tree_leaves

from . import zoo
from .flops import FFT_OPS, OpRecorder, count_step_cost, summarize_attention_ops
from .growth import extrapolate
from .memory import GiB, MiB, StepMemory, TensorPeak, held_bytes, release_memory
from .timing import time_step

__all__ = ['AMP_DTYPES', 'make_step', 'count_cost', 'budget_verdict', 'measure', 'is_oom',
           'size_str']

AMP_DTYPES = {'none': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}


def size_str(hw):
    return f'{hw[0]}' if hw[0] == hw[1] else f'{hw[0]}x{hw[1]}'


def is_oom(exc):
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    msg = str(exc).lower()
    return 'out of memory' in msg or "can't allocate memory" in msg


def make_step(model, mode, device, amp='none', no_grad_ctx=None):
    """``step(x)``: one inference or training step of ``model`` on ``x``.

    Inference runs under ``torch.inference_mode`` unless ``no_grad_ctx``
    (e.g. ``torch.no_grad``) is given: under inference mode composite ops
    such as ``scaled_dot_product_attention`` or ``matmul`` reach dispatch
    modes undecomposed, so FLOP counting and op recording use ``no_grad``
    (same kernels, same FLOPs). ``amp`` (``'fp16'``/``'bf16'``) runs the
    forward under ``torch.autocast`` on the device's type, CPU or CUDA; the
    training step's backward follows the autocast graph. No loss scaling:
    scaling multiplies one scalar and does not change the step's cost.
    """
    dev_type = torch.device(device).type
    dtype = AMP_DTYPES[amp]

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


def count_cost(model, name, hw, batch, mode, args):
    """FLOPs (per image), the DCT share and the fake-tensor memory estimate
    of one step."""
    device = torch.device(args.device)
    zoo.clear_model_caches(model)
    model.train(mode == 'train')
    step = make_step(model, mode, device, args.amp, no_grad_ctx=torch.no_grad)
    # RS-vHeat's NaN/Inf check reads the input's values, which fake tensors
    # do not have; it costs no FLOPs.
    finite = getattr(model, 'check_finite', None)
    if finite:
        model.check_finite = False
    try:
        cost = count_step_cost(lambda: step(torch.empty((batch, 3) + tuple(hw), device=device)),
                               track_memory=args.mem_budget is not None)
    finally:
        if finite:
            model.check_finite = finite
        model.zero_grad(set_to_none=True)  # fake gradients
        zoo.clear_model_caches(model)
    fft = sum(n for op, n in cost['flops_by_op'].items() if op in FFT_OPS)
    rec = dict(flops_per_image=cost['flops'] / batch, macs_per_image=cost['flops'] / 2 / batch,
               flops_by_op={k: v / batch for k, v in cost['flops_by_op'].items()},
               fft_flops_per_image=fft / batch)
    dct = zoo.transform_flops(model, hw, batch, mode, device, AMP_DTYPES[args.amp])
    rec['dct_flops_per_image'] = None if dct is None else dct / batch
    if 'est_step_bytes' in cost:
        rec['est_step_bytes'] = cost['est_step_bytes']
    return rec


def _predicted_step_seconds(rec, history, others):
    """Step time predicted from the same model's last measurement (scaled by
    FLOPs), else from the slowest seconds-per-FLOP of the other models
    measured in this mode; None with nothing to go on."""
    done = [r for r in history if r['status'] == 'ok']
    if done:
        last = done[-1]
        return last['sec_per_iter'] * rec['flops_per_image'] / last['flops_per_image']
    rates = [r['sec_per_iter'] / (r['flops_per_image'] * r['batch']) for r in others
             if r['status'] == 'ok' and r['flops_per_image']]
    if rates:
        return max(rates) * rec['flops_per_image'] * rec['batch']
    return None


def budget_verdict(rec, history, args, device, others=(), deadline=None, fresh_seconds=0.):
    """Reason to skip this measurement, or None.

    ``history``: earlier records of the same model, batch and mode (smaller
    sizes); ``others``: every earlier record of this mode. Memory: what is
    held now plus the larger of the fake-tensor estimate of the bytes the
    step allocates (with a margin for what it cannot see: allocator
    rounding, library workspaces and, on CPU, the threads' scratch memory:
    x1.1 on CUDA, x1.25 + 512 MiB on CPU, where running out of memory kills
    the process) and a power-law extrapolation of the activation memory
    measured at the two largest smaller sizes. Step time: the last measured
    step time scaled by the FLOP ratio. Run time (``deadline``, a
    ``time.monotonic()`` value): the steps this measurement runs, plus the
    fresh-process run (``fresh_seconds``), must end before it.
    """
    for prev in history:
        if prev['status'] in ('skipped', 'oom'):
            return f'a smaller size was {prev["status"]} ({size_str(prev["size"])})'
    done = [r for r in history if r['status'] == 'ok']
    if args.mem_budget is not None:
        held = held_bytes(device)
        est = rec.get('est_step_bytes', 0)
        est = 1.1 * est if device.type == 'cuda' else 1.25 * est + 512 * MiB
        ext = extrapolate([r['pixels'] for r in done],
                          [r['mem_activation_bytes'] for r in done], rec['pixels'])
        predicted = held + max(est, ext or 0)
        rec['predicted_peak_bytes'] = int(predicted)
        if predicted > args.mem_budget * GiB:
            return (f'predicted peak {predicted / GiB:.1f} GiB > --mem-budget '
                    f'{args.mem_budget:g} GiB')
    step_s = _predicted_step_seconds(rec, history, others)
    if step_s is not None:
        rec['predicted_sec_per_iter'] = step_s
    if args.time_budget is not None and done and step_s > args.time_budget:
        return f'predicted step {step_s:.0f} s > --time-budget {args.time_budget:g} s'
    if deadline is not None and step_s is not None:
        # recorded first step + warm-up + memory step(s) + timed steps
        steps = 1 + args.warmup + args.iters + (2 if device.type == 'cpu' else 1)
        need = steps * step_s + fresh_seconds
        left = deadline - time.monotonic()
        if need > left:
            return (f'predicted {need:.0f} s (step {step_s:.2g} s x {steps}'
                    + (f' + fresh process {fresh_seconds:.0f} s' if fresh_seconds else '')
                    + f') > {max(left, 0):.0f} s left of --run-budget')
    return None


def measure(model, name, hw, batch, mode, args, history, logger, others=(), deadline=None,
            fresh=None):
    """Record of one measurement; ``fresh`` (callable, optional) measures
    the fresh-process resident growth of inference rows and returns a dict,
    with ``fresh.expected_seconds`` its predicted run time."""
    device = torch.device(args.device)
    rec = dict(model=name, size=list(hw), size_str=size_str(hw), pixels=hw[0] * hw[1],
               batch=batch, mode=mode, amp=args.amp, status='ok')
    rec['params'] = sum(p.numel() for p in model.parameters())
    rec.update(count_cost(model, name, hw, batch, mode, args))
    if args.flops_only:
        rec['status'] = 'flops-only'
        return rec
    fresh = fresh if mode == 'infer' else None
    reason = budget_verdict(rec, history, args, device, others, deadline,
                            getattr(fresh, 'expected_seconds', 0.) if fresh else 0.)
    if reason is not None:
        rec.update(status='skipped', skip_reason=reason)
        logger.info(f'  skipped: {reason}')
        return rec

    model.train(mode == 'train')
    step = make_step(model, mode, device, args.amp)
    first_step = make_step(model, mode, device, args.amp, no_grad_ctx=torch.no_grad)
    recorder = OpRecorder()
    x = None
    try:
        x = torch.randn((batch, 3) + tuple(hw), device=device)
        with recorder:  # records the ops dispatched
            first_step(x)
        # Warm-up on the measured path: under the recorder (a dispatch mode)
        # RS-vHeat keeps no cache entry and runs its standard-op path.
        for _ in range(args.warmup):
            step(x)
        model.zero_grad(set_to_none=True)  # gradients are allocated inside the step
        with StepMemory(device) as mem:
            step(x)
        if device.type == 'cpu':
            # Peak of live tensor allocations (CPU analogue of CUDA's
            # max_memory_allocated): independent of the allocator's state,
            # which earlier (e.g. training) steps leave behind in the RSS.
            model.zero_grad(set_to_none=True)
            with TensorPeak() as peak:
                step(x)
            rec['mem_tensor_peak_bytes'] = peak.peak
        else:
            rec['mem_tensor_peak_bytes'] = mem.activation
        cached = zoo.cache_bytes(model)
        if cached is not None:
            rec['cache_bytes'] = cached
        model.zero_grad(set_to_none=True)
        timing = time_step(lambda: step(x), device, warmup=0, iters=args.iters)
    except Exception as e:  # noqa: BLE001 - only out-of-memory is recorded
        if not is_oom(e):
            raise
        rec.update(status='oom', skip_reason=f'out of memory: {str(e).splitlines()[0][:200]}')
        logger.info(f'  {rec["skip_reason"]}')
        return rec
    finally:
        x = None
        model.zero_grad(set_to_none=True)
        release_memory(device)
    rec.update(mem.as_dict())
    rec['attention'] = summarize_attention_ops(recorder.ops)
    rec['attention_ops'] = sorted(o for o in recorder.ops
                                  if 'attention' in o or 'softmax' in o or 'bmm' in o)
    rec.update(sec_per_iter=timing['median'], sec_per_iter_mean=timing['mean'],
               sec_per_iter_std=timing['std'], iter_times=timing['iter_times'],
               sec_per_image=timing['median'] / batch, images_per_s=batch / timing['median'])
    if fresh is not None:
        rec.update(fresh(name, hw, batch))
    return rec
