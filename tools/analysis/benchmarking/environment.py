"""Where a benchmark ran: device, CPU features, library versions, commit."""
import datetime
import os
import os.path as osp
import platform
import subprocess
import sys

import torch

__all__ = ['BF16_FLAGS', 'FP16_FLAGS', 'cpu_flags', 'cpu_amp_support', 'environment', 'ROOT']

#: The repository (tools/analysis/benchmarking/ -> three levels up).
ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
#: /proc/cpuinfo flags of native bf16 arithmetic (AVX512-BF16 dot products,
#: AMX-BF16 tile GEMMs). Without them PyTorch's CPU kernels run bf16 autocast
#: by converting to fp32 and back (slower than fp32 itself for most ops).
BF16_FLAGS = ('avx512_bf16', 'amx_bf16')
#: Native fp16 arithmetic (AVX512-FP16, AMX-FP16).
FP16_FLAGS = ('avx512_fp16', 'amx_fp16')
#: Recorded in the environment: what decides reduced-precision CPU speed.
_RECORDED_FLAGS = ('avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx_vnni', 'amx_tile',
                   'amx_int8') + BF16_FLAGS + FP16_FLAGS


def cpu_flags():
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where absent)."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_amp_support(amp):
    """``(native, note)`` for autocast ``amp`` on this CPU: whether it has
    the instructions for it, and what to tell the reader if not."""
    if amp == 'none':
        return True, None
    flags = cpu_flags()
    need = BF16_FLAGS if amp == 'bf16' else FP16_FLAGS
    if flags & set(need):
        return True, None
    return False, (f'this CPU has no {"/".join(need)} (see /proc/cpuinfo): PyTorch runs '
                   f'{amp} autocast on it through emulation (conversions around fp32 '
                   f'arithmetic), usually slower than fp32; {amp} timings from this machine '
                   'say nothing about CPUs with native support')


def _cpu_name():
    name = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            name = next(line.split(':', 1)[1].strip() for line in f
                        if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return name


def environment(args):
    """The environment record of a run (JSON-ready)."""
    dev = torch.device(args.device)
    if dev.type == 'cuda':
        props = torch.cuda.get_device_properties(dev)
        device = f'{props.name} ({props.total_memory / (1 << 30):.0f} GiB)'
    else:
        device = f'{_cpu_name()}, {os.cpu_count()} logical cores'
    from importlib.metadata import PackageNotFoundError, version
    versions = {'torch': torch.__version__}
    for module, dists in (('mmengine', ('mmengine', 'onedl-mmengine')),
                          ('mmcv', ('mmcv', 'mmcv-lite', 'onedl-mmcv')),
                          ('mmpretrain', ('mmpretrain', 'onedl-mmpretrain'))):
        mod = sys.modules.get(module)
        versions[module] = getattr(mod, '__version__', None)
        for dist in dists:
            try:
                versions[module] = f'{version(dist)} ({dist})'
                break
            except PackageNotFoundError:
                continue
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
    flags = cpu_flags()
    native, note = cpu_amp_support(args.amp) if dev.type == 'cpu' else (True, None)
    return dict(
        date=datetime.datetime.now().isoformat(timespec='seconds'),
        command='python tools/analysis/benchmark.py ' + ' '.join(getattr(args, 'argv', None)
                                                                 or sys.argv[1:]),
        device=device, device_type=dev.type, threads=torch.get_num_threads(),
        cpu=_cpu_name(), cpu_flags={f: f in flags for f in _RECORDED_FLAGS},
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        amp=args.amp, amp_native=native, amp_note=note, tf32=bool(args.tf32),
        versions=versions, commit=commit,
        pretrain_size=args.pretrain_size if args.pretrain_size == 'input' else
        'x'.join(map(str, args.pretrain_size)) if args.pretrain_size[0] != args.pretrain_size[1]
        else str(args.pretrain_size[0]), tiny=bool(args.tiny), warmup=args.warmup,
        iters=args.iters, baseline=args.baseline,
        fresh_forwards=getattr(args, 'fresh_forwards', None))
