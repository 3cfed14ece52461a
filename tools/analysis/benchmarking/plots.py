"""The benchmark's figures (PNG bytes): each figure against resolution,
absolute and as a ratio to the baseline; the scaling study on log-log axes
with the fitted slopes."""
import io
import math

from .measure import size_str
from .memory import MiB
from .report import MODES, SCALING_METRICS

__all__ = ['plot_table', 'plot_scaling']

METRICS = [('flops_per_image', 'GFLOPs / image', 1e9, 'ratio_flops'),
           ('images_per_s', 'images / s', 1.0, 'ratio_images_per_s'),
           ('mem_activation_bytes', 'activation memory (MiB)', MiB, 'ratio_mem_activation')]


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
