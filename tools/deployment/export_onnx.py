#!/usr/bin/env python
"""Export the RS-vHeat backbone or a segmentation model to ONNX and check it.

The heat conduction operator is DCT matrix products, so the graph uses only
standard ONNX operators; the model is exported in deploy mode (precomputed
conductivity) for one input size (the DCT bases and decays are constants of
that size: export one file per tile size). By default ONNX Runtime is run on
a random input and compared with PyTorch (``--atol``, default 1e-4); a JSON
file next to the model records inputs, outputs, the preprocessing inside the
graph, classes and the measured differences::

    # backbone of any config (pretraining included), 1 x bands x 512 x 512
    python tools/deployment/export_onnx.py CONFIG --checkpoint CKPT --part backbone \\
        --shape 512 512 --out work_dirs/onnx/rsvheat_backbone.onnx
    # a whole segmentation model: raw image in (as its test pipeline loads it),
    # logits and class mask out
    python tools/deployment/export_onnx.py SEG_CONFIG --checkpoint CKPT --part segmentor \\
        --shape 512 512 --out work_dirs/onnx/upernet.onnx
"""
import argparse
import json
import os.path as osp


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('--checkpoint', help='weights (without: random initialisation)')
    parser.add_argument('--out', required=True, help='.onnx file to write')
    parser.add_argument('--part', choices=['backbone', 'segmentor'], default='backbone')
    parser.add_argument('--shape', type=int, nargs=2, required=True, metavar=('H', 'W'),
                        help='input height and width')
    parser.add_argument('--batch', type=int, default=1, help='batch size of the graph')
    parser.add_argument('--modality', default=None,
                        help='backbone stem to export (default: the config\'s default '
                        'modality, or the only stem)')
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--atol', type=float, default=1e-4,
                        help='tolerance of the ONNX Runtime vs PyTorch check')
    parser.add_argument('--no-verify', action='store_true', help='skip the ONNX Runtime check')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    return parser.parse_args(argv)


def _stem_bands(backbone, modality):
    stems = backbone.in_channels
    name = modality or backbone.default_modality
    if name is None:
        if len(stems) != 1:
            raise SystemExit(f'the backbone has stems {stems}: choose one with --modality')
        name = next(iter(stems))
    if name not in stems:
        raise SystemExit(f'--modality {name!r} is not a stem of the backbone: {list(stems)}')
    return name, stems[name]


def main(argv=None):
    args = parse_args(argv)
    import rsvheat_mm  # noqa: F401  (registration, safe checkpoint loading)
    from mmengine.config import Config

    from rsvheat_mm.apis.onnx_export import (build_backbone_from_config, export_backbone,
                                             export_segmentor)
    from rsvheat_mm.utils import atomic_write
    if not args.out.endswith('.onnx'):
        raise SystemExit(f'--out must end with .onnx, got {args.out}')
    if args.checkpoint is not None and not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'--checkpoint not found: {args.checkpoint}')
    if args.checkpoint is None:
        print('warning: no --checkpoint, exporting randomly initialised weights')
    h, w = args.shape
    if args.part == 'backbone':
        cfg = Config.fromfile(args.config)
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
        backbone = build_backbone_from_config(cfg, args.checkpoint)
        modality, bands = _stem_bands(backbone, args.modality)
        info = export_backbone(backbone, args.out, (args.batch, bands, h, w), modality=modality,
                               opset=args.opset, verify=not args.no_verify, atol=args.atol)
    else:
        from rsvheat_mm.apis import RSVHeatInferencer
        inferencer = RSVHeatInferencer(args.config, weights=args.checkpoint, device='cpu',
                                       cfg_options=args.cfg_options, show_progress=False)
        if inferencer.task != 'segmentation':
            raise SystemExit(f'--part segmentor exports segmentation models; {args.config} is '
                             f'a {inferencer.task} config (export its --part backbone)')
        model = inferencer.model
        if args.checkpoint is None:
            model.init_weights()
        pre = model.data_preprocessor
        if getattr(pre, 'mean', None) is not None:
            bands = int(pre.mean.numel())
        else:
            bands = sum(model.backbone.in_channels.values()) \
                if type(model).__name__ == 'RSVHeatMultiModalEncoderDecoder' \
                else _stem_bands(model.backbone, args.modality)[1]
        meta = inferencer.dataset_meta
        info = export_segmentor(model, args.out, (args.batch, bands, h, w), opset=args.opset,
                                verify=not args.no_verify, atol=args.atol,
                                classes=meta.get('classes'), palette=meta.get('palette'))
    info.update(config=osp.abspath(args.config),
                checkpoint=osp.abspath(args.checkpoint) if args.checkpoint else None,
                opset=args.opset, verified=not args.no_verify)
    meta_file = osp.splitext(args.out)[0] + '.json'
    atomic_write(json.dumps(info, indent=1), meta_file)
    print(f'{args.out} ({info["kind"]}, input {info["inputs"][0]["shape"]})')
    if 'max_abs_diff' in info:
        print('ONNX Runtime vs PyTorch, max |diff|: ' + ', '.join(
            f'{k} {v:.2e}' for k, v in info['max_abs_diff'].items()))
    print(f'description: {meta_file}')
    return info


if __name__ == '__main__':
    main()
