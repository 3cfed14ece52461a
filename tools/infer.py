#!/usr/bin/env python
"""Run any rsvheat_mm model on images, folders or huge (Geo)TIFF scenes.

The task (classification, segmentation, change detection, horizontal or
rotated detection) comes from the config. Outputs go to ``--out-dir``:
``vis/<name>.jpg`` and ``preds/<name>.*`` -- JSON (classes, boxes), GeoJSON
(detections on georeferenced inputs, in the source CRS), GeoTIFF class /
change masks keeping the source CRS and transform (PNG for plain images)::

    python tools/infer.py CONFIG IMAGE_OR_FOLDER [...] --weights CKPT --out-dir out
    python tools/infer.py CONFIG scene.tif --weights CKPT --out-dir out --tile 1024 --overlap 128
    python tools/infer.py CD_CONFIG a.tif b.tif --weights CKPT --out-dir out  # a pair
    python tools/infer.py CD_CONFIG pairs/ --weights CKPT --out-dir out       # pairs/{A,B}
    python tools/infer.py upernet_rsvheat-demo_1xb2-40iter_loveda-samples-256x256 img.png \\
        --weights CKPT --out-dir out                     # a model name of model-index.yml
    python tools/infer.py SEG_CONFIG ms.tif --bands 2 1 0 --norm-range 0 2000 \\
        --weights CKPT --out-dir out     # an RGB model on 3 bands of a 16-bit GeoTIFF

For change detection the inputs are taken two by two (date A, date B), or a
folder holding ``A/`` and ``B/``.

Tiled scenes (``--tile``, or any raster above 4096 x 4096 px) are predicted
window by window; class and change masks are streamed to their GeoTIFF, so
memory does not grow with the scene. Nodata pixels -- the raster's nodata
value or mask, and NaN/Inf pixels of float rasters even without a nodata
tag -- are filled before the model and written as 255 (detections on them
are dropped); the summary line says how many NaN/Inf pixels there were.
"""
import argparse
import os.path as osp


def _pair(values):
    if values is None:
        return None
    if len(values) not in (1, 2):
        raise SystemExit(f'expected one value or h w, got {values}')
    return values[0] if len(values) == 1 else tuple(values)


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('model', nargs='?',
                        help='config file, or a model name of model-index.yml')
    parser.add_argument('inputs', nargs='*',
                        help='images, GeoTIFFs or folders (pairs for change detection)')
    parser.add_argument('--weights', help='checkpoint (without it: random weights)')
    parser.add_argument('--out-dir', default='', help='write vis/ and preds/ here')
    parser.add_argument('--device', default=None, help='default: cuda:0 if available')
    parser.add_argument('--batch-size', type=int, default=1,
                        help='images (or windows, when tiled) per forward')
    parser.add_argument('--tile', type=int, nargs='+', default=None,
                        help='tiled inference with windows of this size (one value or h w); '
                        'default: whole images, scenes above 16.7 Mpx tiled automatically')
    parser.add_argument('--overlap', type=int, nargs='+', default=None,
                        help='window overlap (one value or h w); default 128, 200 for '
                        'detection')
    parser.add_argument('--blend', choices=['gaussian', 'mean'], default='gaussian',
                        help='weighting of overlapping segmentation / change windows')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detections below this score are neither drawn nor written')
    parser.add_argument('--bands', type=int, nargs='+', default=None,
                        help='0-based raster bands to read, in order (e.g. R G B of a '
                        'multispectral GeoTIFF for an RGB model); "color" configs get them '
                        'as B G R, as OpenCV would')
    parser.add_argument('--norm-range', type=float, nargs=2, default=None,
                        metavar=('MIN', 'MAX'),
                        help='map raster values MIN..MAX linearly to 0..255 (e.g. 12-bit '
                        'sensors stored as uint16 for a model trained on 8-bit images)')
    parser.add_argument('--nodata', type=float, default=None,
                        help='raster nodata value (default: the file\'s nodata / mask)')
    parser.add_argument('--vis-bands', type=int, nargs=3, default=None,
                        help='0-based bands drawn as R G B (multispectral inputs)')
    parser.add_argument('--opacity', type=float, default=0.6, help='mask opacity in drawings')
    parser.add_argument('--show', action='store_true', help='display the drawings')
    parser.add_argument('--no-save-vis', action='store_true', help='do not write drawings')
    parser.add_argument('--no-save-pred', action='store_true',
                        help='do not write prediction files')
    parser.add_argument('--print-result', action='store_true', help='log each prediction')
    parser.add_argument('--list-models', action='store_true',
                        help='list the models of model-index.yml and exit')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    args = parser.parse_args(argv)
    if not args.list_models and (args.model is None or not args.inputs):
        parser.error('give a config (or model name) and at least one input')
    return args


def _group_inputs(task, inputs):
    """Change detection: files two by two; folders as they are."""
    if task != 'change_detection':
        return inputs
    out, pending = [], []
    for item in inputs:
        if osp.isdir(item):
            if pending:
                raise SystemExit(f'date-B image missing after {pending[0]}')
            out.append(item)
        else:
            pending.append(item)
            if len(pending) == 2:
                out.append(tuple(pending))
                pending = []
    if pending:
        raise SystemExit(f'change detection takes pairs: {pending[0]} has no date-B image')
    return out


def main(argv=None):
    args = parse_args(argv)
    import rsvheat_mm  # noqa: F401  (registration, safe checkpoint loading)
    from rsvheat_mm.apis import RSVHeatInferencer
    if args.list_models:
        for name in RSVHeatInferencer.list_models():
            print(name)
        return None
    if args.weights is not None and not osp.isfile(args.weights):
        raise FileNotFoundError(f'--weights not found: {args.weights}')
    raster_loader = {}
    if args.bands is not None:
        raster_loader['bands'] = args.bands
    if args.norm_range is not None:
        raster_loader['norm'] = dict(type='range', min=args.norm_range[0],
                                     max=args.norm_range[1], out_range=(0, 255))
    if args.nodata is not None:
        raster_loader['nodata'] = args.nodata
    inferencer = RSVHeatInferencer(args.model, weights=args.weights, device=args.device,
                                   cfg_options=args.cfg_options, raster_loader=raster_loader)
    items = _group_inputs(inferencer.task, args.inputs)
    outputs = []
    for item in items:
        # One call per argument: a folder expands to its images (or pairs).
        result = inferencer(
            item, batch_size=args.batch_size, out_dir=args.out_dir, tile=_pair(args.tile),
            overlap=_pair(args.overlap), blend=args.blend, show=args.show,
            pred_score_thr=args.score_thr, vis_bands=args.vis_bands, opacity=args.opacity,
            no_save_vis=args.no_save_vis, no_save_pred=args.no_save_pred,
            print_result=args.print_result)
        outputs.extend(result['predictions'])
    for record in outputs:
        files = ', '.join(f'{k}: {v}' for k, v in record.get('files', {}).items())
        print(f'[{record["task"]}] {record["name"]}: {_summary(record)}'
              + (f' -> {files}' if files else ''))
    return outputs


def _summary(record) -> str:
    if 'pred_class' in record:
        text = f'{record["pred_class"]} ({record["pred_score"]:.3f})'
    elif 'windows' in record:
        text = f'{len(record["windows"])} windows labelled'
    elif 'class_pixels' in record:
        total = sum(record['class_pixels'].values())
        top = sorted(record['class_pixels'].items(), key=lambda kv: -kv[1])[:3]
        text = ', '.join(f'{k} {100 * v / total:.1f}%' for k, v in top)
    else:
        text = f'{len(record["bboxes"])} detections >= {record["score_thr"]}'
        if record.get('dropped_in_nodata'):
            text += f' ({record["dropped_in_nodata"]} on nodata dropped)'
    if record.get('nonfinite_pixels'):
        text += f'; {record["nonfinite_pixels"]} NaN/Inf pixels treated as nodata'
    return text


if __name__ == '__main__':
    main()
