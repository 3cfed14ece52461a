#!/usr/bin/env python
"""Make change-detection pairs with known, planted changes from the bundled real tiles.

Writes the LEVIR-CD layout ``<out>/<split>/{A,B,label}/<name>.png`` (labels
0/255) plus ``<out>/<split>/planted_changes.json`` describing every planted
object/region, the registration jitter and the photometric change (see
:mod:`rsvheat_mm.datasets.planted_changes`). Splits: ``train`` (LoveDA tiles
0-1 + the 8 RS-vHeat sample scenes, LoveDA-0/Vaihingen buildings), ``val`` and
``test`` (LoveDA tile 2, LoveDA-1/Potsdam buildings) and ``huge`` (the
1616x1565 DOTA scene, for tiled inference)::

    python tools/cd_make_planted_pairs.py work_dirs/planted_cd --splits train val test huge
"""
import argparse
import os.path as osp


HUGE_SPLIT = dict(bases=['dota_scene/dota_demo.jpg'], objects=['loveda1', 'potsdam'],
                  textures=['loveda/img_dir/2.png'], pairs_per_base=1)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('out', help='output root')
    parser.add_argument('--splits', nargs='+', default=['train', 'val', 'test'],
                        choices=['train', 'val', 'test', 'huge'])
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--max-size', type=int, default=None,
                        help='centre-crop the base images to at most this size')
    parser.add_argument('--demo-root', default=None, help='bundled data (demo/data)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from rsvheat_mm.datasets.planted_changes import (DEFAULT_SPLITS, DEMO_DATA,
                                                     make_planted_change_dataset)
    available = dict(DEFAULT_SPLITS, huge=HUGE_SPLIT)
    splits = {name: available[name] for name in args.splits}
    written = make_planted_change_dataset(args.out, splits, demo_root=args.demo_root or DEMO_DATA,
                                          seed=args.seed, max_size=args.max_size)
    for split, names in written.items():
        print(f'{osp.join(args.out, split)}: {len(names)} pair(s)')
    return written


if __name__ == '__main__':
    main()
