#!/usr/bin/env python
"""Split DOTA-format scenes (DOTA, FAIR1M after ``fair1m.py to-dota``) into
overlapping patches with mmrotate's window layout and object assignment.

Writes ``SAVE_DIR/images/<scene>__<size>__<x>___<y>.png`` and, for labelled
scenes, ``SAVE_DIR/annfiles/<same>.txt`` (objects cut by a window get
difficulty 2). Example (DOTA-v1.0 single scale)::

    python tools/dataset_converters/dota_split.py \\
        --img-dirs data/DOTA/train/images data/DOTA/val/images \\
        --ann-dirs data/DOTA/train/labelTxt data/DOTA/val/labelTxt \\
        --sizes 1024 --gaps 200 --save-dir data/split_ss_dota/trainval

Multi-scale (mmrotate's ``ms``): ``--rates 0.5 1.0 1.5 --gaps 500``.
"""
import argparse

from rsvheat_mm.datasets.dota_split import split_dota_dataset


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--img-dirs', nargs='+', required=True)
    parser.add_argument('--ann-dirs', nargs='+', help='DOTA label dirs, one per '
                        'image dir (omit for unlabelled test scenes)')
    parser.add_argument('--save-dir', required=True)
    parser.add_argument('--sizes', nargs='+', type=int, default=[1024],
                        help='window sizes')
    parser.add_argument('--gaps', nargs='+', type=int, default=[200],
                        help='overlap of neighbouring windows (mmrotate\'s gaps)')
    parser.add_argument('--rates', nargs='+', type=float, default=[1.0],
                        help='scales: windows of size/rate px')
    parser.add_argument('--img-rate-thr', type=float, default=0.6,
                        help='keep windows at least this much covered by the image')
    parser.add_argument('--iof-thr', type=float, default=0.7,
                        help='keep an object in a window when this part of it is inside')
    parser.add_argument('--no-padding', action='store_true',
                        help='do not pad border patches to the window size')
    parser.add_argument('--padding-value', nargs='+', type=int, default=[0])
    parser.add_argument('--save-ext', default='.png', choices=['.png', '.jpg', '.bmp', '.tif'])
    parser.add_argument('--nproc', type=int, default=1)
    parser.add_argument('--overwrite', action='store_true',
                        help='replace the patches of an earlier run in --save-dir')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    pad = args.padding_value[0] if len(args.padding_value) == 1 else args.padding_value
    records = split_dota_dataset(
        args.img_dirs, args.ann_dirs, args.save_dir, sizes=args.sizes, gaps=args.gaps,
        rates=args.rates, img_rate_thr=args.img_rate_thr, iof_thr=args.iof_thr,
        padding=not args.no_padding, padding_value=pad, save_ext=args.save_ext,
        nproc=args.nproc, overwrite=args.overwrite)
    scenes = len({r['scene'] for r in records})
    print(f'\n{len(records)} patches from {scenes} scenes written to {args.save_dir}')


if __name__ == '__main__':
    main()
