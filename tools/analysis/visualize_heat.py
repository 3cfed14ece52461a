#!/usr/bin/env python
"""Visualise heat diffusion inside an RS-vHeat backbone for one image.

For each stage (one chosen block), the figure shows:

* **input energy** -- mean square of the features entering the heat
  conduction operator (what there is to diffuse);
* **output energy** -- the same after conduction (where it went);
* **heat kernel** -- the operator's response to a point source at the
  chosen image location, ``log10 |response| / max``: how far, and in which
  directions, this block spreads information from there (its effective
  receptive field; the half-mass radius is printed below it);
* **decay spectrum** -- ``exp(-K * lam)`` averaged over channels on a log
  scale: which spatial frequencies survive (top-left = low frequencies).

Example::

    python tools/analysis/visualize_heat.py demo/data/scenes/1.png \\
        --config configs/segmentation/upernet_rsvheat-b_8xb2-80k_potsdam-512x512.py \\
        --checkpoint work_dirs/potsdam/iter_80000.pth --point 350 300 --out heat.png
"""
import argparse
import io
import os.path as osp


import rsvheat_mm  # noqa: F401

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = [123.675, 116.28, 103.53]
IMAGENET_STD = [58.395, 57.12, 57.375]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Visualise heat diffusion in RS-vHeat')
    p.add_argument('image', help='image file (any band count mmcv/tifffile reads)')
    p.add_argument('--config', required=True, help='any config whose model has an RSVHeat backbone')
    p.add_argument('--checkpoint', help='weights (training checkpoint, pretrain checkpoint, '
                   'official vHeat/RS-vHeat); default: the config\'s init_cfg / random')
    p.add_argument('--modality', help='stem to use (default: by band count)')
    p.add_argument('--point', nargs=2, type=float, metavar=('X', 'Y'),
                   help='point source in image pixels (default: image centre)')
    p.add_argument('--block', type=int, default=-1,
                   help='block of each stage to show (default last)')
    p.add_argument('--size', type=int, default=512,
                   help='resize the longer side to this (0 = keep)')
    p.add_argument('--out', default='heat_diffusion.png', help='output PNG')
    return p.parse_args(argv)


def load_image(path, size):
    if path.lower().endswith(('.tif', '.tiff')):
        import tifffile
        img = tifffile.imread(path)
        if img.ndim == 3 and img.shape[0] < img.shape[-1] and img.shape[0] <= 32:
            img = img.transpose(1, 2, 0)  # bands-first TIFF
    else:
        import mmcv
        img = mmcv.imread(path, flag='unchanged', channel_order='rgb')
    if img is None:
        raise FileNotFoundError(f'cannot read image {path}')
    img = img[..., None] if img.ndim == 2 else img
    if img.shape[-1] == 4 and not path.lower().endswith(('.tif', '.tiff')):
        img = img[..., :3]  # RGBA PNG: drop alpha
    img = img.astype(np.float32)
    h, w = img.shape[:2]
    scale = 1.0
    if size and max(h, w) != size:
        scale = size / max(h, w)
        t = torch.from_numpy(img).permute(2, 0, 1)[None]
        t = F.interpolate(t, size=(round(h * scale), round(w * scale)), mode='bilinear',
                          align_corners=False)
        img = t[0].permute(1, 2, 0).numpy()
    return img, scale


def build_backbone(cfg_path, checkpoint):
    from mmengine.config import Config

    from rsvheat_mm.models.backbones.convert import load_pretrained_rsvheat
    from rsvheat_mm.registry import MODELS
    cfg = Config.fromfile(cfg_path)
    backbone_cfg = cfg.model.get('backbone')
    if backbone_cfg is None or 'RSVHeat' not in str(backbone_cfg.get('type')):
        raise KeyError(f'{cfg_path}: model.backbone is not an RSVHeat backbone')
    backbone_cfg = backbone_cfg.copy()
    backbone_cfg.type = 'RSVHeat'
    backbone_cfg.pop('init_cfg', None) if checkpoint else None
    model = MODELS.build(backbone_cfg)
    if checkpoint:
        load_pretrained_rsvheat(model, dict(type='Pretrained', checkpoint=checkpoint))
    else:
        model.init_weights()
    pre = cfg.model.get('data_preprocessor') or cfg.get('data_preprocessor') or {}
    return model.eval(), pre


def normalise(img, pre):
    bands = img.shape[-1]
    mean, std = pre.get('mean'), pre.get('std')
    if mean is None or len(mean) != bands:
        mean = IMAGENET_MEAN if bands == 3 else [float(img[..., b].mean()) for b in range(bands)]
        std = IMAGENET_STD if bands == 3 else [float(img[..., b].std()) + 1e-6
                                               for b in range(bands)]
    t = torch.from_numpy(img).permute(2, 0, 1).float()
    return (t - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


@torch.no_grad()
def analyse(model, x, point, block, modality=None):
    """Per-stage maps (numpy) for the figure."""
    captured = {}
    hooks = []
    for i, stage in enumerate(model.stages):
        op = stage.blocks[block].op

        def pre_hook(mod, args, i=i):
            captured[i] = args  # (x, decay, sce)

        hooks.append(op.register_forward_pre_hook(pre_hook))
    try:
        model(x[None], modality=modality)
    finally:
        for h in hooks:
            h.remove()
    rows = []
    H, W = x.shape[-2:]
    for i, stage in enumerate(model.stages):
        feat, decay, sce = captured[i]
        op = stage.blocks[block].op
        u, _ = op.pre_heat(feat, sce)
        y = op.heat(u, decay)
        h, w = u.shape[1:3]
        py = min(int(point[1] * h / H), h - 1)
        px = min(int(point[0] * w / W), w - 1)
        delta = torch.zeros(1, h, w, u.shape[-1])
        delta[0, py, px] = 1.0
        kernel = op.heat(delta, decay)[0].mean(-1)
        k = kernel.abs()
        yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')
        dist = torch.sqrt((yy - py).float()**2 + (xx - px).float()**2)
        order = torch.argsort(dist.flatten())
        cum = torch.cumsum(k.flatten()[order], 0) / k.sum()
        r50 = float(dist.flatten()[order][torch.searchsorted(cum, torch.tensor(0.5))])
        stride = H / h
        rows.append(dict(
            energy_in=u.pow(2).mean(-1)[0].numpy(), energy_out=y.pow(2).mean(-1)[0].numpy(),
            kernel=kernel.numpy(), point=(px, py), decay=decay.float().mean(-1).numpy(),
            r50_px=r50 * stride, size=(h, w)))
    return rows


def render(img, rows, point, title):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    shown = img[..., :3] if img.shape[-1] >= 3 else img[..., 0]
    shown = (shown - shown.min()) / max(float(shown.max() - shown.min()), 1e-6)
    cols = ['image', 'input energy', 'output energy', 'heat kernel (log10, point source)',
            'decay spectrum (log10)']
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(3.2 * len(cols), 3.0 * len(rows)),
                             squeeze=False)
    for r, row in enumerate(rows):
        panels = [shown, row['energy_in'], row['energy_out'], row['kernel'],
                  np.log10(np.clip(row['decay'], 1e-12, None))]
        for c, panel in enumerate(panels):
            ax = axes[r, c]
            cmap = None if c == 0 else ('inferno' if c < 3 else 'viridis')
            if c == 3:
                mag = np.abs(panel) / max(float(np.abs(panel).max()), 1e-12)
                ax.imshow(np.log10(np.clip(mag, 1e-6, None)), cmap='magma', vmin=-6, vmax=0)
                ax.plot(*row['point'], marker='+', color='c', markersize=8)
            else:
                ax.imshow(panel, cmap=cmap)
            if c == 0:
                ax.plot(point[0], point[1], marker='+', color='r', markersize=10, mew=2)
                ax.set_ylabel(f'stage {r} ({row["size"][0]}x{row["size"][1]})')
            if r == 0:
                ax.set_title(cols[c], fontsize=9)
            if c == 3:
                ax.set_xlabel(f'half-mass radius {row["r50_px"]:.0f} px', fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=100)
    plt.close(fig)
    return buf.getvalue()


def main(argv=None):
    args = parse_args(argv)
    from rsvheat_mm.utils import atomic_write
    model, pre = build_backbone(args.config, args.checkpoint)
    img, scale = load_image(args.image, args.size)
    h, w = img.shape[:2]
    point = (args.point[0] * scale, args.point[1] * scale) if args.point else (w / 2, h / 2)
    if not (0 <= point[0] < w and 0 <= point[1] < h):
        raise ValueError(f'--point {args.point} lies outside the image')
    x = normalise(img, pre)
    rows = analyse(model, x, point, args.block, args.modality)
    png = render(img, rows, point, f'{osp.basename(args.image)}: heat diffusion, block '
                 f'{args.block} of each stage')
    atomic_write(png, args.out)
    for i, row in enumerate(rows):
        print(f'stage {i}: {row["size"][0]}x{row["size"][1]}, half of the heat from the point '
              f'stays within {row["r50_px"]:.1f} image px')
    print(f'saved {args.out}')
    return rows


if __name__ == '__main__':
    main()
