#!/usr/bin/env python
"""Convert AIR-PolSAR-Seg to the mmseg layout read by ``AIRPolSARSegDataset``.

The release holds 500 GF-3 patches of 512 x 512, each as four amplitude
images ``<id>_HH``, ``<id>_HV``, ``<id>_VH``, ``<id>_VV`` (TIFF or PNG) and an
RGB label map ``<id>_gt.png`` (``--label-suffix``). RS-vHeat has a
one-band SAR stem, so the four polarisations are reduced to one band:

* ``--band span`` (default): the RMS amplitude ``sqrt((|HH|^2 + |HV|^2 +
  |VH|^2 + |VV|^2) / 4)``, i.e. the square root of the polarimetric span
  (total power) / 4, which keeps every channel's backscatter and stays in
  the input's value range and dtype;
* ``--band HH`` (or HV, VH, VV): that polarisation only.

Labels: colours -> class ids by ``AIR_POLSAR_SEG_PALETTE`` (black = unlabeled
-> 255); a label image that already holds ids 0..5 (single channel) is
taken as is. Any other colour is an error naming the file.

Split: a patch under a folder named ``train*`` goes to ``train``, under
``test*``/``val*`` to ``test``; otherwise a seeded random ``--test-ratio``
split::

    python tools/dataset_converters/air_polsar_seg.py data/AIR-PolSAR-Seg -o data/air-polsar-seg
"""
import argparse
import os
import os.path as osp
import re
from collections import defaultdict
from typing import Dict, Optional, Sequence

import cv2
import numpy as np
from mmengine.utils import ProgressBar


from rsvheat_mm.datasets.transforms.optical_sar import read_bands
from rsvheat_mm.utils import atomic_write

POLARIZATIONS = ('HH', 'HV', 'VH', 'VV')
IMG_EXTENSIONS = ('.tif', '.tiff', '.png', '.bmp', '.jpg')
IGNORE_INDEX = 255


def palette():
    # The dataset module imports mmseg; import it only when converting labels.
    from rsvheat_mm.datasets.air_polsar_seg import AIR_POLSAR_SEG_PALETTE
    return AIR_POLSAR_SEG_PALETTE


def find_patches(src: str) -> Dict[str, Dict[str, str]]:
    """``{patch path without suffix: {pol: file}}`` under ``src``."""
    pattern = re.compile(r'^(.+)_(HH|HV|VH|VV)$', re.IGNORECASE)
    patches = defaultdict(dict)
    for dirpath, _, names in os.walk(src):
        for name in names:
            stem, ext = osp.splitext(name)
            match = pattern.match(stem)
            if match and ext.lower() in IMG_EXTENSIONS:
                key = osp.join(dirpath, match.group(1))
                patches[key][match.group(2).upper()] = osp.join(dirpath, name)
    if not patches:
        raise FileNotFoundError(f'no <id>_HH/_HV/_VH/_VV images under {src}')
    return dict(patches)


def reduce_polarizations(files: Dict[str, str], band: str) -> np.ndarray:
    """One ``(H, W)`` band from the polarisation images of one patch."""
    needed = POLARIZATIONS if band == 'span' else (band, )
    missing = [p for p in needed if p not in files]
    if missing:
        some = next(iter(files.values()))
        raise FileNotFoundError(f'{some}: the patch lacks polarisation(s) {missing} '
                                f'needed for --band {band}')
    amps = []
    for pol in needed:
        arr = read_bands(files[pol])
        if arr.shape[2] != 1:
            raise ValueError(f'{files[pol]}: expected a single-band amplitude image, got '
                             f'{arr.shape[2]} bands')
        amps.append(arr[..., 0])
    if band != 'span':
        return amps[0]
    shapes = {a.shape for a in amps}
    if len(shapes) != 1:
        raise ValueError(f'{files["HH"]}: polarisation images differ in size {shapes}')
    dtype = amps[0].dtype
    power = np.mean([a.astype(np.float64)**2 for a in amps], axis=0)
    rms = np.sqrt(power)
    if np.issubdtype(dtype, np.integer):
        rms = np.clip(np.rint(rms), 0, np.iinfo(dtype).max)
    return rms.astype(dtype)


def convert_label(path: str, num_classes: int) -> np.ndarray:
    """Class ids (0..num_classes-1, 255 unlabeled) of a label image."""
    lab = read_bands(path)
    if lab.shape[2] == 1:
        ids = lab[..., 0]
        bad = np.setdiff1d(np.unique(ids), list(range(num_classes)) + [IGNORE_INDEX])
        if bad.size:
            raise ValueError(f'{path}: single-channel label with values {bad.tolist()} '
                             f'outside 0..{num_classes - 1} and {IGNORE_INDEX}')
        return ids.astype(np.uint8)
    rgb = lab[..., :3].astype(np.int64)
    codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    out = np.full(codes.shape, 254, np.uint8)  # 254: not yet assigned
    colours = [(0, 0, 0)] + [tuple(c) for c in palette()]
    for cls_id, (r, g, b) in zip([IGNORE_INDEX] + list(range(num_classes)), colours):
        out[codes == (r << 16 | g << 8 | b)] = cls_id
    unknown = codes[out == 254]
    if unknown.size:
        values, counts = np.unique(unknown, return_counts=True)
        listed = ', '.join(f'({v >> 16},{v >> 8 & 255},{v & 255}) x{c}'
                           for v, c in list(zip(values, counts))[:5])
        raise ValueError(f'{path}: colours not in the AIR-PolSAR-Seg palette: {listed}')
    return out


def split_of(key: str, src: str) -> Optional[str]:
    for part in osp.relpath(key, src).split(os.sep)[:-1]:
        part = part.lower()
        if part.startswith('train'):
            return 'train'
        if part.startswith(('test', 'val')):
            return 'test'
    return None


def write_png(arr: np.ndarray, path: str) -> None:
    ok, buf = cv2.imencode('.png', arr)
    if not ok:
        raise IOError(f'could not encode {path}')
    atomic_write(buf.tobytes(), path)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, int]:
    parser = argparse.ArgumentParser(description='Convert AIR-PolSAR-Seg to mmseg format')
    parser.add_argument('src', help='the extracted AIR-PolSAR-Seg release')
    parser.add_argument('-o', '--out-dir', default='data/air-polsar-seg')
    parser.add_argument('--band', default='span', choices=('span', ) + POLARIZATIONS,
                        help='how the SAR band is made from the polarisations')
    parser.add_argument('--label-suffix', default='_gt.png',
                        help='label file = <id> + this suffix')
    parser.add_argument('--test-ratio', type=float, default=0.2,
                        help='test fraction when the release has no train/test folders')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)

    num_classes = len(palette())
    patches = find_patches(args.src)
    keys = sorted(patches)
    splits = {k: split_of(k, args.src) for k in keys}
    unsplit = [k for k in keys if splits[k] is None]
    if unsplit:
        if not 0 < args.test_ratio < 1:
            raise ValueError(f'--test-ratio must be in (0, 1), got {args.test_ratio}')
        order = np.random.default_rng(args.seed).permutation(len(unsplit))
        n_test = max(1, int(round(args.test_ratio * len(unsplit))))
        for rank, i in enumerate(order):
            splits[unsplit[i]] = 'test' if rank < n_test else 'train'

    counts = defaultdict(int)
    progress = ProgressBar(len(keys))
    for key in keys:
        label_path = key + args.label_suffix
        if not osp.isfile(label_path):
            raise FileNotFoundError(f'no label {label_path} for the patch '
                                    f'{next(iter(patches[key].values()))}')
        img = reduce_polarizations(patches[key], args.band)
        ids = convert_label(label_path, num_classes)
        if ids.shape != img.shape:
            raise ValueError(f'{label_path} is {ids.shape} but its image is {img.shape}')
        name = osp.basename(key)
        split = splits[key]
        write_png(img, osp.join(args.out_dir, 'img_dir', split, name + '.png'))
        write_png(ids, osp.join(args.out_dir, 'ann_dir', split, name + '.png'))
        counts[split] += 1
        progress.update()
    print(f'\n{dict(counts)} patches -> {args.out_dir} (band: {args.band})')
    return dict(counts)


if __name__ == '__main__':
    main()
