"""DCT implementation profile: the heat conduction timed per DCT
implementation and axis length, to choose ``POCKETFFT_MIN_LENGTH`` /
``FFT_MIN_LENGTH`` of ``rsvheat_mm/models/layers/heat_conduction.py``."""
import os.path as osp

import torch

from .environment import environment
from .measure import is_oom
from .memory import release_memory
from .report import env_lines, fmt, fmt_ratio, write_json, write_text
from .timing import time_step

__all__ = ['profile_dct']


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
                    t = time_step(lambda: heat_conduction(u, decay, True, impl), device,
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
            release_memory(device)
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
        lines.append(f'| {r["length"]} | ' + ' | '.join(fmt(r.get(f'{i}_ms')) for i in impls) +
                     ' | ' + ' | '.join(fmt_ratio(r.get(f'{i}_speedup')) for i in impls[1:]) + ' |')
    lines.append('')
    for impl, const in (('scipy', 'POCKETFFT_MIN_LENGTH'), ('fft', 'FFT_MIN_LENGTH')):
        if impl in suggested:
            n = suggested[impl]
            lines.append(f'Suggested `{const}[{device.type!r}]`: ' +
                         (f'{n}' if n else 'none of the lengths tried (keep the GEMM)'))
    stem = osp.join(args.out_dir, args.name)
    write_json(stem + '.json', dict(env=env, rows=rows, suggested_min_length=suggested))
    write_text(stem + '.md', '\n'.join(lines) + '\n')
    logger.info(f'wrote {stem}.md/.json')
    return dict(rows=rows, suggested_min_length=suggested)
