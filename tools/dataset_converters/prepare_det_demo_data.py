#!/usr/bin/env python
"""Build the DOTA-format demo scene for the rotated-detection demo and tests.

Source: ``demo/data/dota`` (mmrotate's test fixture, from DOTA-v1.0): a
170 x 170 RGBA thumbnail of the 1024 px DOTA patch ``P2805__1024__0___0``
and its label file with 4 ``plane`` polygons **in the 1024 px patch frame**.
The only transformation: coordinates are scaled into the thumbnail's frame
(x * width / 1024, y * height / 1024) and the alpha channel is dropped. The
result is a labelled "scene" in DOTA's on-disk format, which is then split
into 128 px patches with 42 px overlap (``dota_split.py`` at the demo's
scale) for the rotated-detection demo config::

    OUT/dota/images/P2805.png
    OUT/dota/labelTxt/P2805.txt      (imagesource/gsd header + x1 y1 .. y4 plane 0)
    OUT/dota_split/images/P2805__128__<x>___<y>.png, OUT/dota_split/annfiles/...

    python tools/dataset_converters/prepare_det_demo_data.py --out-dir work_dirs/demo_det_data
"""
import argparse
import os.path as osp

import cv2

from rsvheat_mm.datasets.rs_det_formats import read_dota_txt, write_dota_txt
from rsvheat_mm.utils import atomic_write

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DOTA_SAMPLE = osp.join(ROOT, 'demo', 'data', 'dota')
SAMPLE_ID = 'P2805__1024__0___0'
LABEL_FRAME = 1024  # the label coordinates' frame (the original patch size)


def build_dota_demo_scene(out_dir: str, sample_dir: str = DOTA_SAMPLE,
                          scene_id: str = 'P2805') -> dict:
    """Write the bundled DOTA sample as a DOTA-format scene under ``out_dir``.

    Returns:
        dict: ``img_path``, ``ann_path``, ``height``, ``width`` and ``objects``
        (the scaled polygons as written).
    """
    img = cv2.imread(osp.join(sample_dir, 'images', SAMPLE_ID + '.png'), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f'bundled DOTA sample missing in {sample_dir}/images')
    height, width = img.shape[:2]
    ann = read_dota_txt(osp.join(sample_dir, 'labelTxt', SAMPLE_ID + '.txt'))
    sx, sy = width / LABEL_FRAME, height / LABEL_FRAME
    objects = [dict(obj, poly=[round(v * (sx if i % 2 == 0 else sy), 2)
                               for i, v in enumerate(obj['poly'])])
               for obj in ann['objects']]
    img_path = osp.join(out_dir, 'images', scene_id + '.png')
    ann_path = osp.join(out_dir, 'labelTxt', scene_id + '.txt')
    ok, buf = cv2.imencode('.png', img)
    if not ok:
        raise RuntimeError('could not encode the demo scene')
    atomic_write(buf.tobytes(), img_path)
    write_dota_txt(ann_path, objects, imagesource='GoogleEarth', gsd=None)
    return dict(img_path=img_path, ann_path=ann_path, height=height, width=width,
                objects=objects)


def main(argv=None):
    from rsvheat_mm.datasets.dota_split import split_dota_dataset
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out-dir', required=True)
    parser.add_argument('--size', type=int, default=128, help='patch size')
    parser.add_argument('--gap', type=int, default=42, help='patch overlap')
    args = parser.parse_args(argv)
    scene_dir = osp.join(args.out_dir, 'dota')
    info = build_dota_demo_scene(scene_dir)
    print(f'DOTA demo scene ({info["width"]}x{info["height"]}, {len(info["objects"])} '
          f'objects) -> {scene_dir}')
    split_dir = osp.join(args.out_dir, 'dota_split')
    records = split_dota_dataset([osp.join(scene_dir, 'images')],
                                 [osp.join(scene_dir, 'labelTxt')], split_dir,
                                 sizes=[args.size], gaps=[args.gap], overwrite=True)
    print(f'\n{len(records)} patches -> {split_dir}')


if __name__ == '__main__':
    main()
