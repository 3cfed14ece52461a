"""Numerical checks of RS-vHeat on an accelerator (run by gpu_check.sh).

* **Parity**: the same RS-vHeat weights and input on the device under test
  and on a reference (CUDA vs CPU; in a dry run CPU vs CPU with the torch.fft
  DCT), fp32 with TF32 off: the eval forward, and a training forward +
  backward with a random upstream gradient (the input's and every
  parameter's gradient). Each pair of tensors is compared by its relative
  error ``||a - b|| / ||b||``; max abs / max relative (to ``max |b|``) errors
  are reported beside it.

  Tolerances: outputs 1e-4, gradients 1e-3. fp32 rounds at 6e-8; the two
  devices sum in different orders (cuBLAS vs MKL/oneDNN GEMMs, cuDNN vs CPU
  depth-wise convolutions, GEMM vs pocketfft DCTs on CPU axes >= 192), which
  leaves about sqrt(K) * 6e-8 per reduction of length K <= 4096, ~1e-5 after
  some 24 normalised blocks; 10x margin for the forward, and another 10x
  for the backward, whose LayerNorm gradients divide by per-pixel standard
  deviations and whose weight gradients sum over every pixel. A wrong kernel
  (transposed basis, missing decay, stale cache) errs by 1e-2 to 1.
  The weights are random, with layer scales raised to 0.5 and conductivity
  biases drawn from [0.2, 1] so that every block and every DCT changes the
  output (at their initial values the blocks add ~1e-5 and the decay is ~1,
  where a broken transform pair would pass unnoticed).
* **Autocast training**: a training step of the same model under fp16 and
  bf16 autocast at ``--amp-size``: loss, outputs and all gradients must be
  finite. fp16 scales the loss as ``torch.amp.GradScaler`` does (2^16,
  halved after a non-finite step, up to 8 times); the errors against the
  fp32 step are reported, not judged.

``python -m benchmarking.device_checks --device cuda --reference cpu --out DIR``
first prints the versions it runs with (exit 2 if there is no CUDA device or
``import rsvheat_mm`` fails), then writes ``DIR/device_checks.json`` and
``.md`` and exits 1 if a check failed.
"""
import argparse
import json
import math
import os.path as osp
import sys
import time

import torch

__all__ = ['compare', 'TOLERANCES', 'parity', 'autocast_step', 'main']

#: Relative error ||a - b|| / ||b|| allowed between devices (see above).
TOLERANCES = dict(output=1e-4, grad=1e-3)


def compare(a, b, tol):
    """Errors of ``a`` against the reference ``b`` and whether within ``tol``."""
    a = a.detach().double().cpu()
    b = b.detach().double().cpu()
    diff = (a - b).abs()
    ref = b.norm().item()
    rel = diff.norm().item() / ref if ref > 0 else diff.norm().item()
    scale = b.abs().max().item()
    res = dict(rel=rel, max_abs=diff.max().item() if diff.numel() else 0.,
               max_rel=(diff.max().item() / scale) if scale > 0 else 0.,
               finite=bool(torch.isfinite(a).all()))
    res['ok'] = res['finite'] and rel <= tol
    return res


def build(arch, size, dct_impl='auto', seed=0):
    """RS-vHeat with random weights that make every block count."""
    from rsvheat_mm.models.backbones.rsvheat import RSVHeat
    torch.manual_seed(seed)
    from .zoo import init_weights_quietly
    model = RSVHeat(arch=arch, in_channels=dict(optical=3), pretrain_img_size=size,
                    drop_path_rate=0., dct_impl=dct_impl)
    init_weights_quietly(model)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for stage in model.stages:
            for block in stage.blocks:
                if block.gamma1 is not None:
                    block.gamma1.fill_(0.5)
                    block.gamma2.fill_(0.5)
                to_k = getattr(block.op, 'to_k', None)
                if to_k is not None:
                    to_k.bias.copy_(0.2 + 0.8 * torch.rand(to_k.bias.shape, generator=gen))
    model.clear_cache()
    return model


def _outputs_and_grads(model, x, upstream, device):
    model = model.to(device)
    xd = x.to(device)
    model.eval()
    with torch.inference_mode():
        infer = [o.cpu() for o in model(xd)]
    model.train()
    xd = xd.clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    outs = model(xd)
    loss = sum((o * g.to(device)).sum() for o, g in zip(outs, upstream))
    loss.backward()
    grads = {'input': xd.grad.cpu()}
    grads.update({n: p.grad.cpu() for n, p in model.named_parameters() if p.grad is not None})
    train = [o.detach().cpu() for o in outs]
    model.zero_grad(set_to_none=True)
    return infer, train, grads


def parity(arch, size, device, reference, reference_dct_impl='auto', batch=2):
    """Compare ``device`` against ``reference`` (see the module docstring)."""
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        model = build(arch, size)
        ref_model = build(arch, size, dct_impl=reference_dct_impl)
        ref_model.load_state_dict(model.state_dict())
        gen = torch.Generator().manual_seed(2)
        x = torch.randn(batch, 3, size, size, generator=gen)
        # A random upstream gradient per output (B, C_i, H_i, W_i), shaped
        # from the model's own facts.
        sizes = model.feature_sizes((size, size))
        upstream = [torch.randn((batch, model.dims[i]) + tuple(sizes[i]), generator=gen)
                    for i in model.out_indices]
        t0 = time.perf_counter()
        got = _outputs_and_grads(model, x, upstream, device)
        t1 = time.perf_counter()
        ref = _outputs_and_grads(ref_model, x, upstream, reference)
        t2 = time.perf_counter()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    rows = {}
    for kind, i in (('infer', 0), ('train', 1)):
        for j, (a, b) in enumerate(zip(got[i], ref[i])):
            rows[f'{kind} output {j}'] = compare(a, b, TOLERANCES['output'])
    grads = {n: compare(got[2][n], ref[2][n], TOLERANCES['grad']) for n in ref[2]}
    missing = sorted(set(ref[2]) ^ set(got[2]))
    worst = max(grads, key=lambda n: grads[n]['rel'])
    rows['grad input'] = grads['input']
    rows[f'grad worst parameter ({worst})'] = grads[worst]
    ok = all(r['ok'] for r in rows.values()) and all(g['ok'] for g in grads.values()) \
        and not missing
    return dict(ok=ok, size=size, batch=batch, device=str(device), reference=str(reference),
                reference_dct_impl=reference_dct_impl, rows=rows,
                grads_failed=sorted(n for n, g in grads.items() if not g['ok']),
                grads_missing=missing, n_grads=len(grads), tolerances=TOLERANCES,
                seconds=dict(device=t1 - t0, reference=t2 - t1))


def _train_step(model, x, amp, scale):
    model.zero_grad(set_to_none=True)
    dtype = {'fp16': torch.float16, 'bf16': torch.bfloat16}.get(amp)
    with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
        outs = model(x)
    loss = sum(o.float().square().mean() for o in outs)
    (loss * scale).backward()
    grads = {n: p.grad.float() / scale for n, p in model.named_parameters()
             if p.grad is not None}
    return loss.detach(), [o.detach().float() for o in outs], grads


def autocast_step(arch, size, device, amp, max_halvings=8):
    """One training step under ``amp`` autocast; finite? (module docstring)"""
    model = build(arch, size).to(device)
    model.train()
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(3)).to(device)
    ref_loss, ref_outs, ref_grads = _train_step(model, x, 'none', 1.)
    scale = 2.**16 if amp == 'fp16' else 1.
    halvings = 0
    t0 = time.perf_counter()
    while True:
        loss, outs, grads = _train_step(model, x, amp, scale)
        grads_finite = all(bool(torch.isfinite(g).all()) for g in grads.values())
        if grads_finite or amp != 'fp16' or halvings >= max_halvings:
            break
        scale /= 2
        halvings += 1
    if x.device.type == 'cuda':
        torch.cuda.synchronize(x.device)
    seconds = time.perf_counter() - t0
    finite = bool(torch.isfinite(loss)) and all(bool(torch.isfinite(o).all()) for o in outs) \
        and grads_finite
    out_err = max(compare(o, r, math.inf)['rel'] for o, r in zip(outs, ref_outs))
    grad_errs = sorted(compare(grads[n], ref_grads[n], math.inf)['rel'] for n in ref_grads)
    return dict(ok=finite, amp=amp, size=size, loss=float(loss), loss_fp32=float(ref_loss),
                finite=finite, loss_scale=scale, scale_halvings=halvings,
                output_rel_err_vs_fp32=out_err,
                grad_rel_err_vs_fp32_median=grad_errs[len(grad_errs) // 2],
                grad_rel_err_vs_fp32_max=grad_errs[-1], seconds=seconds)


def markdown(res):
    out = ['# RS-vHeat device checks', '',
           f'- device: {res["device_name"]}; reference: {res["reference_name"]}; arch: '
           f'{res["arch"]}; torch {res["torch"]}', '']
    p = res.get('parity')
    if p:
        out += [f'## Parity, fp32 (TF32 off), {p["size"]} px, batch {p["batch"]}: '
                f'{"PASS" if p["ok"] else "FAIL"}', '',
                f'{p["device"]} against {p["reference"]} (reference DCT: '
                f'{p["reference_dct_impl"]}); tolerance on ||a-b||/||b||: outputs '
                f'{TOLERANCES["output"]:g}, gradients {TOLERANCES["grad"]:g} '
                f'({p["n_grads"]} gradients compared).', '',
                '| tensor | rel. error | max abs | max rel | ok |', '|---|---|---|---|---|']
        for name, r in p['rows'].items():
            out.append(f'| {name} | {r["rel"]:.2e} | {r["max_abs"]:.2e} | {r["max_rel"]:.2e} '
                       f'| {"yes" if r["ok"] else "NO"} |')
        if p['grads_failed'] or p['grads_missing']:
            out.append(f'\nFailed gradients: {p["grads_failed"]}; missing: {p["grads_missing"]}')
        out.append('')
    if res.get('autocast'):
        out += ['## Autocast training step', '',
                '| amp | size | finite | loss (fp32) | loss scale | output err vs fp32 | '
                'grad err vs fp32 (median / max) | s |', '|---|---|---|---|---|---|---|---|']
        for a in res['autocast']:
            out.append(f'| {a["amp"]} | {a["size"]} | {"yes" if a["finite"] else "NO"} | '
                       f'{a["loss"]:.4g} ({a["loss_fp32"]:.4g}) | {a["loss_scale"]:g} | '
                       f'{a["output_rel_err_vs_fp32"]:.2e} | '
                       f'{a["grad_rel_err_vs_fp32_median"]:.2e} / '
                       f'{a["grad_rel_err_vs_fp32_max"]:.2e} | {a["seconds"]:.2f} |')
        out.append('')
    for note in res.get('notes', []):
        out.append(f'- note: {note}')
    for s in res['skipped']:
        out.append(f'- skipped: {s}')
    return '\n'.join(out) + '\n'


def preflight(device):
    """Print what the check runs on; False if it cannot run (no CUDA, or
    rsvheat_mm refuses the installed OpenMMLab versions)."""
    print(f'torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}'
          + (f', {torch.cuda.get_device_name(0)}' if torch.cuda.is_available() else ''))
    if device.type == 'cuda' and not torch.cuda.is_available():
        print('preflight: no CUDA device (use --dry-run for the CPU rehearsal)')
        return False
    import importlib
    for mod in ('mmengine', 'mmcv', 'mmpretrain'):
        try:
            m = importlib.import_module(mod)
            if mod == 'mmpretrain':  # the backbones compared with (needs torchvision)
                importlib.import_module('mmpretrain.models')
        except ImportError as e:
            print(f'preflight: {mod} cannot be imported: {e}')
            return False
        print(f'{mod} {m.__version__} from {osp.dirname(m.__file__)}')
    try:
        import rsvheat_mm
    except ImportError as e:
        print(f'preflight: import rsvheat_mm failed: {e}')
        return False
    print(f'rsvheat_mm {rsvheat_mm.__version__} from {osp.dirname(rsvheat_mm.__file__)}',
          flush=True)
    return True


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--device', default='cuda')
    p.add_argument('--reference', default='cpu')
    p.add_argument('--reference-dct-impl', default='auto',
                   choices=['auto', 'matmul', 'fft', 'scipy'])
    p.add_argument('--arch', default='base', help="RSVHeat arch_zoo key, or 'tiny-test'")
    p.add_argument('--parity-size', type=int, default=768)
    p.add_argument('--amp-size', type=int, default=1024)
    p.add_argument('--amps', nargs='*', default=['fp16', 'bf16'])
    p.add_argument('--deadline', type=float, default=None,
                   help='time.time() by which to finish; later steps are skipped')
    p.add_argument('--out', required=True)
    args = p.parse_args(argv)
    if not preflight(torch.device(args.device)):
        return 2
    from rsvheat_mm.utils import atomic_write
    from .environment import cpu_amp_support
    arch = dict(depths=[1, 1, 2, 1], embed_dims=32) if args.arch == 'tiny-test' else args.arch
    device = torch.device(args.device)

    def name(dev):
        dev = torch.device(dev)
        return torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'CPU'

    res = dict(arch=args.arch, device_name=name(device), reference_name=name(args.reference),
               torch=torch.__version__, skipped=[], autocast=[])
    failed = []
    t0 = time.time()
    res['parity'] = parity(arch, args.parity_size, device, torch.device(args.reference),
                           args.reference_dct_impl)
    parity_s = time.time() - t0
    print(f'parity {args.parity_size} px: {"PASS" if res["parity"]["ok"] else "FAIL"} '
          f'({parity_s:.0f} s)', flush=True)
    if not res['parity']['ok']:
        failed.append('parity')
    for amp in args.amps:
        left = None if args.deadline is None else args.deadline - time.time()
        # a step at amp-size costs about (amp/parity)^2 of the device share
        need = res['parity']['seconds']['device'] * 3 * (args.amp_size / args.parity_size)**2
        if left is not None and need > left:
            res['skipped'].append(f'{amp} autocast step at {args.amp_size} px: predicted '
                                  f'{need:.0f} s > {left:.0f} s left')
            print(res['skipped'][-1], flush=True)
            continue
        if device.type == 'cpu':
            native, note = cpu_amp_support(amp)
            if not native:
                res.setdefault('notes', []).append(note)
                print(f'note: {note}', flush=True)
        a = autocast_step(arch, args.amp_size, device, amp)
        res['autocast'].append(a)
        print(f'{amp} training step {args.amp_size} px: '
              f'{"finite" if a["ok"] else "NOT FINITE"} ({a["seconds"]:.1f} s)', flush=True)
        if not a['ok']:
            failed.append(f'{amp} autocast')
    res['failed'] = failed
    atomic_write(json.dumps(res, indent=1), osp.join(args.out, 'device_checks.json'))
    atomic_write(markdown(res), osp.join(args.out, 'device_checks.md'))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
