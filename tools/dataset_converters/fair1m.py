#!/usr/bin/env python
"""FAIR1M-1.0/2.0 conversions.

``to-dota``: FAIR1M label XML (``labelXml/*.xml``) -> DOTA label files, the
input of ``dota_split.py`` and ``FAIR1MDataset``; class names get ``_`` for
spaces ('Small Car' -> 'Small_Car')::

    python tools/dataset_converters/fair1m.py to-dota data/FAIR1M2.0/train/labelXml \\
        --out-dir data/FAIR1M2.0/train/labelTxt

``task1-to-xml``: merged DOTA Task1 results (``Task1_<class>.txt``, written by
``tools/test.py`` with ``MergedDOTAMetric(format_only=True)``) -> one FAIR1M
XML per test image, the format of the FAIR1M evaluation server::

    python tools/dataset_converters/fair1m.py task1-to-xml work_dirs/fair1m_test/Task1 \\
        --img-dir data/FAIR1M2.0/test/images --out-dir work_dirs/fair1m_test/test
"""
import argparse
import glob
import os
import os.path as osp

from mmengine.utils import track_parallel_progress, track_progress


from rsvheat_mm.datasets.rs_det_formats import (fair1m_xml_to_dota,
                                                task1_to_fair1m_xml)

IMG_EXTENSIONS = ('.tif', '.tiff', '.png', '.jpg', '.bmp')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='cmd', required=True)
    p = sub.add_parser('to-dota', help='FAIR1M label XML -> DOTA label files')
    p.add_argument('xml_dir', help='folder of FAIR1M label XML files (labelXml)')
    p.add_argument('--out-dir', required=True, help='folder for the DOTA label files')
    p.add_argument('--nproc', type=int, default=1)
    p = sub.add_parser('task1-to-xml', help='DOTA Task1 results -> FAIR1M result XML')
    p.add_argument('task1_dir', help='folder of Task1_<class>.txt')
    p.add_argument('--out-dir', required=True)
    p.add_argument('--img-dir', help='test images: every image gets a file, '
                   'also without detections')
    p.add_argument('--img-suffix', default='.tif')
    return parser.parse_args(argv)


def _to_dota(task):
    src, out_dir = task
    fair1m_xml_to_dota(src, osp.join(out_dir, osp.basename(src)[:-4] + '.txt'))


def main(argv=None):
    args = parse_args(argv)
    if args.cmd == 'to-dota':
        files = sorted(glob.glob(osp.join(args.xml_dir, '*.xml')))
        if not files:
            raise FileNotFoundError(f'no *.xml label files in {args.xml_dir}')
        tasks = [(f, args.out_dir) for f in files]
        if args.nproc > 1:
            track_parallel_progress(_to_dota, tasks, args.nproc, keep_order=False)
        else:
            track_progress(_to_dota, tasks)
        print(f'\n{len(files)} DOTA label files written to {args.out_dir}')
    else:
        image_ids = None
        if args.img_dir:
            image_ids = [osp.splitext(n)[0] for n in sorted(os.listdir(args.img_dir))
                         if osp.splitext(n)[1].lower() in IMG_EXTENSIONS]
        written = task1_to_fair1m_xml(args.task1_dir, args.out_dir, image_ids,
                                      args.img_suffix)
        print(f'{len(written)} FAIR1M result files written to {args.out_dir}')


if __name__ == '__main__':
    main()
