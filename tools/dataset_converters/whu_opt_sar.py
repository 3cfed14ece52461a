#!/usr/bin/env python
"""Tile WHU-OPT-SAR into the layout read by ``WHUOPTSARDataset``.

The release holds 100 co-registered scenes of 5556 x 3704 px at 5 m::

    WHU-OPT-SAR/optical/<scene>.tif   GF-1, 4 bands (R, G, B, NIR), uint8
    WHU-OPT-SAR/sar/<scene>.tif       GF-3, 1 band, uint8
    WHU-OPT-SAR/lbl/<scene>.tif       0 (unlabeled), 10 farmland, 20 city,
                                      30 village, 40 water, 50 forest,
                                      60 road, 70 others

Every scene is cut into ``--tile`` squares every ``--stride`` pixels (the
last row/column shifted back to end at the border, see
``rsvheat_mm.utils.sliding_windows``; MCANet's protocol is 256/256) and the
tiles are split train/val/test by ``--ratios`` (MCANet: 6:2:2 over tiles;
``--split-by scene`` keeps each scene in one split instead). Output::

    OUT/img_dir/<split>/<scene>_<y>_<x>.tif   optical tile, all bands
    OUT/sar_dir/<split>/<scene>_<y>_<x>.tif   SAR tile
    OUT/ann_dir/<split>/<scene>_<y>_<x>.png   labels 0..7 (value / 10)

    python tools/dataset_converters/whu_opt_sar.py data/WHU-OPT-SAR -o data/whu-opt-sar
"""
import argparse
import io
import os
import os.path as osp
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import tifffile
from mmengine.utils import ProgressBar


from rsvheat_mm.datasets.transforms.optical_sar import read_bands
from rsvheat_mm.utils import atomic_write, sliding_windows

LABEL_VALUES = (0, 10, 20, 30, 40, 50, 60, 70)  # -> ids 0..7 (0 = unlabeled)
SPLITS = ('train', 'val', 'test')
TIFF_SUFFIXES = ('.tif', '.tiff')


def list_scenes(src: str) -> List[str]:
    """Scene names present in ``optical/``, checked against ``sar/`` and ``lbl/``."""
    folders = {k: osp.join(src, k) for k in ('optical', 'sar', 'lbl')}
    for key, folder in folders.items():
        if not osp.isdir(folder):
            raise FileNotFoundError(f'{folder} not found: WHU-OPT-SAR needs optical/, sar/ '
                                    'and lbl/ folders of same-named GeoTIFFs')
    names = {k: {osp.splitext(f)[0] for f in os.listdir(d) if f.lower().endswith(TIFF_SUFFIXES)}
             for k, d in folders.items()}
    scenes = sorted(names['optical'])
    if not scenes:
        raise FileNotFoundError(f'no .tif scenes in {folders["optical"]}')
    for key in ('sar', 'lbl'):
        missing = sorted(set(scenes) - names[key])
        if missing:
            raise FileNotFoundError(f'{folders[key]} lacks the scene(s) {missing[:5]} '
                                    f'that {folders["optical"]} has')
    return scenes


def _scene_file(src: str, folder: str, scene: str) -> str:
    for suffix in TIFF_SUFFIXES:
        path = osp.join(src, folder, scene + suffix)
        if osp.isfile(path):
            return path
    raise FileNotFoundError(osp.join(src, folder, scene + '.tif'))


def convert_label(lbl: np.ndarray, path: str) -> np.ndarray:
    """WHU-OPT-SAR label values 0, 10, ..., 70 -> ids 0..7."""
    values = np.unique(lbl)
    bad = np.setdiff1d(values, LABEL_VALUES)
    if bad.size:
        raise ValueError(f'{path}: label values {bad.tolist()[:10]} are not WHU-OPT-SAR '
                         f'classes {LABEL_VALUES}')
    return (lbl // 10).astype(np.uint8)


def encode_tiff(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    tifffile.imwrite(buf, arr, photometric='minisblack',
                     planarconfig='contig' if arr.ndim == 3 else None)
    return buf.getvalue()


def assign_splits(items: Sequence, ratios: Sequence[float], seed: int) -> Dict:
    """Seeded ``{item: split}`` with ``ratios`` (train, val, test)."""
    ratios = np.asarray(ratios, dtype=np.float64)
    if ratios.shape != (3, ) or (ratios < 0).any() or ratios.sum() <= 0:
        raise ValueError(f'--ratios needs three non-negative numbers, got {ratios.tolist()}')
    ratios = ratios / ratios.sum()
    order = np.random.default_rng(seed).permutation(len(items))
    bounds = np.rint(np.cumsum(ratios) * len(items)).astype(int)
    out = {}
    for rank, i in enumerate(order):
        out[items[i]] = SPLITS[int(np.searchsorted(bounds, rank, side='right'))]
    return out


def tiff_size(path: str):
    """``(H, W)`` of a TIFF from its header, without reading the pixels."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        return series.shape[series.axes.index('Y')], series.shape[series.axes.index('X')]


def write_tile(arr: np.ndarray, path: str) -> None:
    if path.endswith('.png'):
        ok, buf = cv2.imencode('.png', arr)
        if not ok:
            raise IOError(f'could not encode {path}')
        atomic_write(buf.tobytes(), path)
    else:
        atomic_write(encode_tiff(arr), path)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, int]:
    parser = argparse.ArgumentParser(description='Tile WHU-OPT-SAR for rsvheat_mm')
    parser.add_argument('src', help='folder with optical/, sar/ and lbl/')
    parser.add_argument('-o', '--out-dir', default='data/whu-opt-sar')
    parser.add_argument('--tile', type=int, default=256)
    parser.add_argument('--stride', type=int, default=256)
    parser.add_argument('--ratios', type=float, nargs=3, default=(0.6, 0.2, 0.2),
                        metavar=('TRAIN', 'VAL', 'TEST'))
    parser.add_argument('--split-by', choices=('tile', 'scene'), default='tile')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    if not 0 < args.stride <= args.tile:
        raise ValueError(f'--stride must be in (0, --tile], got {args.stride}')

    scenes = list_scenes(args.src)
    paths = {s: {k: _scene_file(args.src, k, s) for k in ('optical', 'sar', 'lbl')}
             for s in scenes}
    windows = {s: sliding_windows(*tiff_size(paths[s]['lbl']), args.tile,
                                  args.tile - args.stride) for s in scenes}
    tiles = [(s, win) for s in scenes for win in windows[s]]
    if args.split_by == 'scene':
        scene_split = assign_splits(scenes, args.ratios, args.seed)
        split = {t: scene_split[t[0]] for t in tiles}
    else:
        split = assign_splits(tiles, args.ratios, args.seed)

    counts = defaultdict(int)
    progress = ProgressBar(len(scenes))
    for scene in scenes:
        p = paths[scene]
        opt, sar, lbl = read_bands(p['optical']), read_bands(p['sar']), read_bands(p['lbl'])
        if lbl.shape[2] != 1:
            raise ValueError(f'{p["lbl"]}: expected a single-band label, got '
                             f'{lbl.shape[2]} bands')
        lbl = convert_label(lbl[..., 0], p['lbl'])
        sizes = {k: a.shape[:2] for k, a in (('optical', opt), ('sar', sar), ('lbl', lbl))}
        if len(set(sizes.values())) != 1:
            raise ValueError(f'scene {scene}: optical/SAR/label sizes differ {sizes}')
        for win in windows[scene]:
            x0, y0, x1, y1 = win
            name, dst = f'{scene}_{y0}_{x0}', split[(scene, win)]
            for sub, arr, ext in (('img_dir', opt, '.tif'), ('sar_dir', sar, '.tif'),
                                  ('ann_dir', lbl, '.png')):
                write_tile(np.ascontiguousarray(arr[y0:y1, x0:x1]),
                           osp.join(args.out_dir, sub, dst, name + ext))
            counts[dst] += 1
        progress.update()
    print(f'\n{len(scenes)} scenes -> {dict(counts)} tiles of {args.tile} px in {args.out_dir}')
    return dict(counts)


if __name__ == '__main__':
    main()
