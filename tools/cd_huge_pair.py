#!/usr/bin/env python
"""Change detection on a co-registered image pair of any size: tile, predict, blend.

Writes the change mask (0/255; a ``.tif`` output keeps date A's
georeferencing) and optionally the change probability (0-255). With
``--label`` it also scores the mask against a reference change map (F1,
precision, recall, IoU of the changed class)::

    python tools/cd_huge_pair.py CONFIG CHECKPOINT A.tif B.tif --out change.tif \\
        --tile 1024 --overlap 128 --batch-size 2
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def _pair(v):
    return v[0] if len(v) == 1 else tuple(v[:2])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('img_a', help='date-A scene')
    parser.add_argument('img_b', help='date-B scene (same size, co-registered)')
    parser.add_argument('--out', required=True, help='change mask to write (.png, .tif, ...)')
    parser.add_argument('--prob-out', help='also write the change probability here')
    parser.add_argument('--tile', type=int, nargs='+', default=[1024],
                        help='window size: one value or h w')
    parser.add_argument('--overlap', type=int, nargs='+', default=[128],
                        help='minimum overlap of windows: one value or h w')
    parser.add_argument('--batch-size', type=int, default=1, help='windows per forward')
    parser.add_argument('--threshold', type=float, default=0.5,
                        help='change probability threshold')
    parser.add_argument('--blend', choices=['gaussian', 'mean'], default='gaussian')
    parser.add_argument('--label', help='reference change map (0 / >0) to score the mask')
    parser.add_argument('--device', default=None, help='default: cuda:0 if available')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import rsvheat_mm  # noqa: F401
    import mmcv
    import numpy as np
    import torch

    from rsvheat_mm.apis.cd_tiled_inference import (inference_change_pair_tiled,
                                                    init_change_detector)
    device = args.device or ('cuda:0' if torch.cuda.is_available() else 'cpu')
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')
    model = init_change_detector(args.config, args.checkpoint, device=device)
    result = inference_change_pair_tiled(
        model, args.img_a, args.img_b, tile=_pair(args.tile), overlap=_pair(args.overlap),
        batch_size=args.batch_size, threshold=args.threshold, blend=args.blend,
        out_file=args.out, prob_file=args.prob_out, progress=True)
    mask = result['mask']
    print(f'\n{args.out}: {mask.shape[1]}x{mask.shape[0]}, {result["num_windows"]} windows, '
          f'{100 * mask.mean():.2f}% changed')
    if args.label:
        from rsvheat_mm.evaluation.cd_metric import change_scores
        label = mmcv.imread(args.label, flag='unchanged')
        if label is None:
            raise FileNotFoundError(f'cannot read --label {args.label}')
        label = (label.max(axis=2) if label.ndim == 3 else label) > 0
        if label.shape != mask.shape:
            raise ValueError(f'--label {args.label} is {label.shape}, the mask {mask.shape}')
        pred = mask.astype(bool)
        tp = float(np.sum(pred & label))
        fp = float(np.sum(pred & ~label))
        fn = float(np.sum(~pred & label))
        tn = float(pred.size) - tp - fp - fn
        scores = change_scores(tp, fp, fn, tn)
        print('vs ' + args.label + ': ' + ', '.join(
            f'{k} {100 * scores[k]:.2f}' for k in ('F1', 'precision', 'recall', 'IoU')))
    return result


if __name__ == '__main__':
    main()
