"""The benchmark's outputs: ratios to the baseline, growth exponents,
Markdown tables and JSON. Figures are in :mod:`.plots`."""
import json

from rsvheat_mm.utils import atomic_write

from .growth import growth_exponent
from .measure import size_str
from .memory import MiB
from .zoo import MODEL_ZOO, describe

__all__ = ['MODES', 'add_ratios', 'scaling_exponents', 'markdown_table', 'markdown_scaling',
           'env_lines', 'write_json', 'write_text', 'fmt', 'fmt_ratio', 'SCALING_METRICS']

MODES = ('infer', 'train')
#: ratio key -> the figure it relates to the baseline's.
RATIO_KEYS = dict(ratio_flops='flops_per_image', ratio_images_per_s='images_per_s',
                  ratio_mem_activation='mem_activation_bytes', ratio_mem_peak='mem_peak_bytes',
                  ratio_mem_tensor_peak='mem_tensor_peak_bytes',
                  ratio_mem_fresh_rss_growth='mem_fresh_rss_growth_bytes')
SCALING_METRICS = [('flops_per_image', 'GFLOPs', 1e9), ('sec_per_image', 's / image', 1.0),
                   ('mem_activation_bytes', 'activation memory (MiB)', MiB)]
MODE_TITLES = dict(infer='Inference (eval, torch.inference_mode)',
                   train='Training step (train mode, forward + backward of a scalar loss, '
                   'gradients allocated inside the step)')


def write_json(path, payload):
    atomic_write(json.dumps(payload, indent=1, default=str), path)


def write_text(path, text):
    atomic_write(text, path)


def add_ratios(results, baseline):
    """``ratio_*`` = model / baseline at the same size, batch and mode."""
    if baseline is None:
        return
    base = {(tuple(r['size']), r['batch'], r['mode']): r for r in results
            if r['model'] == baseline}
    for r in results:
        b = base.get((tuple(r['size']), r['batch'], r['mode']))
        for rk, k in RATIO_KEYS.items():
            v, bv = r.get(k), (b or {}).get(k)
            r[rk] = v / bv if v is not None and bv else None


def fmt(v, digits=2, scale=1.0):
    if v is None:
        return '—'
    v = v / scale
    if abs(v) >= 100:
        return f'{v:,.0f}'
    return f'{v:.{digits}f}'


def fmt_ratio(v):
    return '—' if v is None else f'{v:.2f}×'


def env_lines(env):
    flags = ', '.join(f for f, on in env.get('cpu_flags', {}).items() if on) or 'none recorded'
    lines = [
        f'- date: {env["date"]}; commit: {env["commit"]}',
        f'- device: {env["device"]}; torch threads: {env["threads"]}; amp: {env["amp"]}'
        f'{"; TF32 on" if env["tf32"] else ""}',
        f'- CPU: {env.get("cpu")}; ATen CPU capability {env.get("cpu_capability")}; '
        f'flags: {flags}',
        '- versions: ' + ', '.join(f'{k} {v}' for k, v in env['versions'].items()),
        f'- models built for {env["pretrain_size"]} px (position embeddings / FVE+SCE), '
        f'resized at run time; warm-up {env["warmup"]}, timed iterations {env["iters"]} '
        '(median)' + ('; **--tiny toy models, not for reporting**' if env['tiny'] else ''),
        f'- command: `{env["command"]}`',
    ]
    if env.get('amp_note'):
        lines.append(f'- **{env["amp"]} on this CPU**: {env["amp_note"]}')
    return lines


def _sort_key(r):
    return (r['pixels'], tuple(r['size']), r['batch'], list(MODEL_ZOO).index(r['model']))


def markdown_table(results, env, baseline):
    out = ['# Backbone benchmark', ''] + env_lines(env) + ['']
    method = next((r['mem_method'] for r in results if r.get('mem_method')),
                  'see docs/benchmark.md')
    out.append('FLOPs per image from `FlopCounterMode` (1 MAC = 2 FLOPs; GEMMs, convolutions, '
               'attention, FFTs; DCT = the FLOPs of RS-vHeat\'s DCT/IDCT transforms as the '
               'model reports them (`RSVHeat.transform_flops`); † = includes fast-transform '
               'FLOPs: 2.5 n log2 n per length-n pocketfft DCT, 5 n log2 n per complex FFT). '
               f'Memory of one step: peak, activation = peak − memory held before ({method}), '
               'tensor peak = allocated tensor bytes on top of those held before (CPU: '
               'PyTorch allocator events; CUDA: max_memory_allocated). Inference: '
               f'fresh RSS = resident-memory growth of a fresh process from before the first '
               f'forward to the peak over {env.get("fresh_forwards")} forwards, caches '
               'included (docs/benchmark.md).')
    if baseline:
        out.append(f'Ratios: model / {baseline} at the same size, batch and mode '
                   '(img/s ×: above 1 is faster; FLOPs × and mem ×: below 1 is cheaper).')
    out.append('')
    for mode in MODES:
        rows = sorted((r for r in results if r['mode'] == mode), key=_sort_key)
        if not rows:
            continue
        fresh = mode == 'infer' and any('mem_fresh_rss_growth_bytes' in r or 'fresh_error' in r
                                        for r in rows)
        head = ['model', 'size (HxW)', 'batch', 'params (M)', 'GFLOPs/img', 'GMACs/img',
                'DCT GFLOPs/img', 'ms/img', 'img/s', 'peak mem (MiB)', 'act. mem (MiB)',
                'tensor peak (MiB)'] + (['fresh RSS growth (MiB)'] if fresh else [])
        if baseline:
            head += ['FLOPs ×', 'img/s ×', 'act. mem ×', 'tensor peak ×'] + \
                (['fresh RSS ×'] if fresh else [])
        head.append('attention / status')
        out += [f'## {MODE_TITLES[mode]}', '', '| ' + ' | '.join(head) + ' |',
                '|' + '---|' * len(head)]
        for r in rows:
            cells = [r['model'], size_str(r['size']), str(r['batch']),
                     fmt(r['params'], 1, 1e6), fmt(r['flops_per_image'], 2, 1e9),
                     fmt(r['macs_per_image'], 2, 1e9),
                     fmt(r.get('dct_flops_per_image'), 2, 1e9) +
                     ('†' if r.get('fft_flops_per_image') else ''),
                     fmt(r.get('sec_per_image'), 2, 1e-3), fmt(r.get('images_per_s'), 2),
                     fmt(r.get('mem_peak_bytes'), 0, MiB),
                     fmt(r.get('mem_activation_bytes'), 0, MiB),
                     fmt(r.get('mem_tensor_peak_bytes'), 0, MiB)]
            if fresh:
                cells.append('error' if 'fresh_error' in r else
                             fmt(r.get('mem_fresh_rss_growth_bytes'), 0, MiB))
            if baseline:
                cells += [fmt_ratio(r.get('ratio_flops')), fmt_ratio(r.get('ratio_images_per_s')),
                          fmt_ratio(r.get('ratio_mem_activation')),
                          fmt_ratio(r.get('ratio_mem_tensor_peak'))]
                if fresh:
                    cells.append(fmt_ratio(r.get('ratio_mem_fresh_rss_growth')))
            note = r.get('attention', '') if r['status'] == 'ok' else \
                f'{r["status"]}: {r.get("skip_reason", "")}'.rstrip(': ')
            if r.get('fresh_error'):
                note += f' (fresh process: {r["fresh_error"]})'
            cells.append(note)
            out.append('| ' + ' | '.join(cells) + ' |')
        out.append('')
    skipped = [r for r in results if r['status'] in ('skipped', 'oom')]
    if skipped:
        out += [f'Skipped: {len(skipped)} measurement(s): ' + '; '.join(
            f'{r["model"]} {r["mode"]} {size_str(r["size"])} bs {r["batch"]} '
            f'({r.get("skip_reason", r["status"])})' for r in skipped) + '.', '']
    names = dict.fromkeys(r['model'] for r in results)
    out.append('Models: ' + '; '.join(f'`{m}` = {describe(m)}' for m in names) + '.')
    return '\n'.join(out) + '\n'


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
                ent[key] = growth_exponent([r['pixels'] for r in rows],
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
            out.append(f'| {model} | {mode} | {fmt(e["flops_per_image"])} | '
                       f'{fmt(e["sec_per_image"])} | {fmt(e["mem_activation_bytes"])} | '
                       f'{", ".join(e["measured_sizes"]) or "—"} | {skipped} |')
    out += ['', '## Measurements', '',
            '| model | mode | size | GFLOPs | s/img | peak mem (MiB) | act. mem (MiB) | '
            'tensor peak (MiB) | fresh RSS growth (MiB) | status |',
            '|---|---|---|---|---|---|---|---|---|---|']
    for r in sorted(results, key=lambda r: (list(MODEL_ZOO).index(r['model']),
                                            MODES.index(r['mode']), r['pixels'])):
        status = r['status'] if r['status'] in ('ok', 'flops-only') else \
            f'{r["status"]}: {r.get("skip_reason", "")}'
        out.append(f'| {r["model"]} | {r["mode"]} | {size_str(r["size"])} | '
                   f'{fmt(r["flops_per_image"], 1, 1e9)} | {fmt(r.get("sec_per_image"), 3)} | '
                   f'{fmt(r.get("mem_peak_bytes"), 0, MiB)} | '
                   f'{fmt(r.get("mem_activation_bytes"), 0, MiB)} | '
                   f'{fmt(r.get("mem_tensor_peak_bytes"), 0, MiB)} | '
                   f'{fmt(r.get("mem_fresh_rss_growth_bytes"), 0, MiB)} | {status} |')
    skipped = [r for r in results if r['status'] in ('skipped', 'oom')]
    out += ['', f'Skipped: {len(skipped)} measurement(s)' +
            (': ' + '; '.join(f'{r["model"]} {r["mode"]} {size_str(r["size"])} '
                              f'({r.get("skip_reason", r["status"])})' for r in skipped)
             if skipped else '.')]
    return '\n'.join(out) + '\n'
