#!/usr/bin/env python
"""Seeded, class-stratified train/test split of a class-folder scene dataset.

AID, NWPU-RESISC45 (and UCM, WHU-RS19, ...) ship as ``ROOT/<class>/<image>``
with no official split; papers train on a fixed fraction of every class
(AID 20 %/50 %, NWPU 10 %/20 %) and test on the rest. This tool draws that
split reproducibly and writes it in mmpretrain's ``CustomDataset`` format::

    python tools/dataset_converters/scene_cls_split.py data/aid/AID --train-ratio 0.2 --seed 0

    data/aid/splits/classes.txt               one class name a line (label = line number)
    data/aid/splits/train_20pct_seed0.txt     "<class>/<image> <label>" lines
    data/aid/splits/test_20pct_seed0.txt

Classes are the sub-folders of ROOT in sorted order; every class gets
``round(ratio * n)`` training images, at least one and at most ``n - 1``.
"""
import argparse
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np


from rsvheat_mm.utils import atomic_write

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.tif', '.tiff', '.bmp')


def scan_class_folders(root: str,
                       extensions: Sequence[str] = IMG_EXTENSIONS) -> Dict[str, List[str]]:
    """``{class: sorted image paths relative to root}`` of ``root/<class>/``."""
    if not osp.isdir(root):
        raise FileNotFoundError(f'dataset root {root} is not a directory')
    classes = sorted(d for d in os.listdir(root) if osp.isdir(osp.join(root, d)))
    if not classes:
        raise ValueError(f'{root} has no class sub-folders (expected ROOT/<class>/<image>)')
    extensions = tuple(e.lower() for e in extensions)
    samples = {}
    for cls in classes:
        files = sorted(
            osp.join(dirpath, f)
            for dirpath, _, names in os.walk(osp.join(root, cls))
            for f in names if f.lower().endswith(extensions))
        if len(files) < 2:
            raise ValueError(f'class folder {osp.join(root, cls)} has {len(files)} image(s) '
                             f'with extensions {extensions}; a train/test split needs >= 2')
        samples[cls] = [osp.relpath(f, root).replace(os.sep, '/') for f in files]
    return samples


def split_samples(samples: Dict[str, List[str]], train_ratio: float,
                  seed: int = 0) -> Tuple[List[Tuple[str, int]], List[Tuple[str, int]]]:
    """Stratified split: ``(train, test)`` lists of ``(path, label)``."""
    if not 0 < train_ratio < 1:
        raise ValueError(f'--train-ratio must be in (0, 1), got {train_ratio}')
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label, cls in enumerate(sorted(samples)):
        files = samples[cls]
        n_train = min(max(int(round(train_ratio * len(files))), 1), len(files) - 1)
        order = rng.permutation(len(files))
        chosen = set(order[:n_train].tolist())
        for i, f in enumerate(files):
            (train if i in chosen else test).append((f, label))
    return train, test


def split_name(train_ratio: float, seed: int) -> str:
    pct = train_ratio * 100
    pct = f'{pct:.0f}' if abs(pct - round(pct)) < 1e-9 else f'{pct:g}'
    return f'{pct}pct_seed{seed}'


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, str]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('root', help='folder with one sub-folder of images per class')
    parser.add_argument('--train-ratio', type=float, required=True,
                        help='fraction of every class used for training, e.g. 0.2')
    parser.add_argument('--seed', type=int, default=0, help='random seed of the split')
    parser.add_argument('-o', '--out-dir',
                        help='where to write the split files (default: ROOT/../splits)')
    parser.add_argument('--extensions', nargs='+', default=list(IMG_EXTENSIONS),
                        help='image file extensions')
    args = parser.parse_args(argv)

    root = osp.normpath(args.root)
    out_dir = args.out_dir or osp.join(osp.dirname(osp.abspath(root)), 'splits')
    samples = scan_class_folders(root, args.extensions)
    train, test = split_samples(samples, args.train_ratio, args.seed)
    name = split_name(args.train_ratio, args.seed)
    outputs = {
        'classes': osp.join(out_dir, 'classes.txt'),
        'train': osp.join(out_dir, f'train_{name}.txt'),
        'test': osp.join(out_dir, f'test_{name}.txt'),
    }
    classes = '\n'.join(sorted(samples)) + '\n'
    if osp.isfile(outputs['classes']):
        with open(outputs['classes']) as f:
            if f.read() != classes:
                raise ValueError(f'{outputs["classes"]} lists other classes than the folders '
                                 f'of {root}; earlier split files would get wrong labels. '
                                 'Use another --out-dir.')
    atomic_write(classes, outputs['classes'])
    for key, items in (('train', train), ('test', test)):
        atomic_write(''.join(f'{path} {label}\n' for path, label in items), outputs[key])
    print(f'{len(samples)} classes, {len(train)} train / {len(test)} test images '
          f'(ratio {args.train_ratio}, seed {args.seed}) -> {out_dir}')
    return outputs


if __name__ == '__main__':
    main()
