#!/usr/bin/env python
"""DIOR / DIOR-R annotation conversions.

``obb2hbb``: DIOR-R's oriented XML (``<robndbox>`` corners) -> DIOR's
horizontal-box XML (``<bndbox>`` = the enclosing box), for users who have
DIOR-R's ``Annotations/Oriented Bounding Boxes`` but not DIOR's horizontal
files (``DIORHBBDataset`` reads either)::

    python tools/dataset_converters/dior.py obb2hbb data/DIOR

``to-dota``: DIOR(-R) XML -> DOTA label files (e.g. to split or to train
DIOR-R with a DOTA-format pipeline)::

    python tools/dataset_converters/dior.py to-dota data/DIOR --out-dir data/DIOR/labelTxt
"""
import argparse
import glob
import os.path as osp

from mmengine.utils import track_progress


from rsvheat_mm.datasets.rs_det_formats import (DIOR_CLASSES,
                                                dior_obb_to_hbb, voc_xml_to_dota)

OBB_SUBDIR = 'Annotations/Oriented Bounding Boxes'
HBB_SUBDIR = 'Annotations/Horizontal Bounding Boxes'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='cmd', required=True)
    p = sub.add_parser('obb2hbb', help='oriented (DIOR-R) -> horizontal (DIOR) XML')
    p.add_argument('root', help='DIOR root')
    p.add_argument('--src-subdir', default=OBB_SUBDIR)
    p.add_argument('--dst-subdir', default=HBB_SUBDIR)
    p = sub.add_parser('to-dota', help='DIOR(-R) XML -> DOTA label files')
    p.add_argument('root', help='DIOR root')
    p.add_argument('--ann-subdir', default=OBB_SUBDIR)
    p.add_argument('--out-dir', required=True)
    return parser.parse_args(argv)


def xml_files(folder):
    files = sorted(glob.glob(osp.join(folder, '*.xml')))
    if not files:
        raise FileNotFoundError(f'no *.xml annotations in {folder}')
    return files


def main(argv=None):
    args = parse_args(argv)
    if args.cmd == 'obb2hbb':
        dst = osp.join(args.root, args.dst_subdir)
        files = xml_files(osp.join(args.root, args.src_subdir))
        track_progress(lambda f: dior_obb_to_hbb(f, osp.join(dst, osp.basename(f))), files)
        print(f'\n{len(files)} horizontal-box XML files written to {dst}')
    else:
        files = xml_files(osp.join(args.root, args.ann_subdir))
        track_progress(lambda f: voc_xml_to_dota(
            f, osp.join(args.out_dir, osp.basename(f)[:-4] + '.txt'), DIOR_CLASSES), files)
        print(f'\n{len(files)} DOTA label files written to {args.out_dir}')


if __name__ == '__main__':
    main()
