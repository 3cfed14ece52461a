#!/usr/bin/env python
"""Detect objects on a scene of any size: tile, detect, merge with NMS.

Works with every detection config of this repository, horizontal (mmdet) or
rotated (mmrotate). GeoTIFFs and other rasters are read window by window.
Writes ``<out-dir>/<scene>.json`` (boxes in scene pixels: ``[x1, y1, x2,
y2]`` or ``[cx, cy, w, h, angle]``, score, label, class), for georeferenced
rasters ``<scene>.geojson`` (polygons in the raster's CRS) and, unless
``--no-vis``, ``<scene>.jpg`` drawn by the config's visualizer::

    python tools/det_huge_image.py CONFIG CHECKPOINT demo/data/dota_scene/dota_demo.jpg \\
        --tile 1024 --overlap 200 --score-thr 0.3 --out-dir work_dirs/huge
"""
import argparse
import copy
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('image', help='scene image (any size)')
    parser.add_argument('--out-dir', required=True)
    parser.add_argument('--tile', type=int, nargs='+', default=[1024],
                        help='window size: one value or h w')
    parser.add_argument('--overlap', type=int, nargs='+', default=[200],
                        help='minimum overlap of windows: one value or h w')
    parser.add_argument('--batch-size', type=int, default=1, help='windows per forward')
    parser.add_argument('--iou-thr', type=float, default=None,
                        help='IoU of the merging NMS (default: the model\'s own)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='drop detections below this score')
    parser.add_argument('--device', default='cuda:0' if _cuda() else 'cpu')
    parser.add_argument('--no-vis', action='store_true', help='skip the drawing')
    return parser.parse_args(argv)


def _cuda():
    import torch
    return torch.cuda.is_available()


def _pair(v):
    return v[0] if len(v) == 1 else tuple(v[:2])


def main(argv=None):
    args = parse_args(argv)
    import rsvheat_mm  # noqa: F401  (registration, safe checkpoint loading)
    import cv2
    import mmcv
    import numpy as np
    from mmdet.apis import init_detector
    from mmengine import dump
    from mmengine.registry import VISUALIZERS

    from rsvheat_mm.apis.det_tiled_inference import (build_window_pipeline,
                                                     inference_detector_tiled)
    from rsvheat_mm.apis.geo_io import detections_to_geojson
    from rsvheat_mm.apis.scene import SceneReader
    from rsvheat_mm.utils import atomic_write

    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')
    model = init_detector(args.config, args.checkpoint, device=args.device)
    loader_cfg, file_loader, _ = build_window_pipeline(model.cfg)
    scene = SceneReader(args.image, loader_cfg, file_loader)
    # rasters are read window by window unless the whole scene is drawn
    img = scene.read_all()[0] if not (args.no_vis and scene.is_raster) else None
    result = inference_detector_tiled(
        model, img if img is not None else args.image, tile=_pair(args.tile),
        overlap=_pair(args.overlap), batch_size=args.batch_size, iou_thr=args.iou_thr,
        score_thr=args.score_thr)
    pred = result.pred_instances
    classes = model.dataset_meta.get('classes', ())
    name = osp.splitext(osp.basename(args.image))[0]
    records = [dict(bbox=[round(float(v), 2) for v in box], score=round(float(s), 4),
                    label=int(l), **({'class': classes[int(l)]} if classes else {}))
               for box, s, l in zip(pred.bboxes.tolist(), pred.scores, pred.labels)]
    out_json = osp.join(args.out_dir, name + '.json')
    dump(dict(image=args.image, height=scene.height, width=scene.width,
              windows=[list(w) for w in result.windows], detections=records), out_json)
    if scene.geo is not None:  # georeferenced raster: polygons in its CRS too
        out_geojson = osp.join(args.out_dir, name + '.geojson')
        dump(detections_to_geojson(pred.bboxes.numpy(), pred.scores.numpy(),
                                   pred.labels.numpy(), classes, scene.geo,
                                   properties=dict(image=args.image)), out_geojson)
        print(f'georeferenced detections -> {out_geojson}')
    print(f'{len(records)} detections on {scene.width}x{scene.height} px from '
          f'{len(result.windows)} windows -> {out_json}')

    if not args.no_vis:
        vis_cfg = copy.deepcopy(model.cfg.visualizer)
        vis_cfg.pop('vis_backends', None)  # we write the image ourselves
        vis_cfg.name = f'det_huge_image_{name}'
        vis = VISUALIZERS.build(vis_cfg)
        vis.dataset_meta = model.dataset_meta
        rgb = mmcv.bgr2rgb(img) if img.ndim == 3 else np.repeat(img[..., None], 3, -1)
        vis.add_datasample(name, rgb, result, draw_gt=False, show=False,
                           pred_score_thr=args.score_thr)
        ok, buf = cv2.imencode('.jpg', mmcv.rgb2bgr(vis.get_image()))
        if not ok:
            raise RuntimeError('could not encode the visualisation')
        out_img = osp.join(args.out_dir, name + '.jpg')
        atomic_write(buf.tobytes(), out_img)
        print(f'visualisation -> {out_img}')


if __name__ == '__main__':
    main()
