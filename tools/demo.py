#!/usr/bin/env python
"""The main job: RS-vHeat end to end on the bundled real samples (CPU is fine).

Every stage runs the same commands a user runs (``tools/train.py``,
``tools/test.py`` and the analysis/inference tools) on small configs from
``configs/demo/`` with a tiny backbone, so the whole job finishes in minutes
on a 2-core CPU. The self-supervised pretraining stage comes first and its
checkpoint initialises the backbone of every downstream stage.

    python tools/demo.py                       # all stages
    python tools/demo.py --stages seg det      # a subset
    python tools/demo.py --list                # what each stage does
    python tools/demo.py --iters 2             # every stage and step, 2 iterations each

Outputs go to ``work_dirs/demo/<stage>/``; a summary table is printed and
written to ``work_dirs/demo/summary.md``.
"""
import argparse
import glob
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


STAGES = [
    dict(
        name='pretrain',
        title='Self-supervised pretraining (frequency masking, multi-domain '
        'reconstruction, optical-SAR contrast) on aerial scenes and tiles',
        config='configs/demo/rsvheat-pretrain_rsvheat-demo_1xb4-40iter_scenes-sarstandin-64px.py',
        metrics=['loss', 'loss_spa', 'loss_fre', 'loss_con'],
        provides_pretrain=True),
    dict(
        name='cls',
        title='Scene classification (mmpretrain ImageClassifier) on the aerial scenes',
        config='configs/demo/rsvheat-demo_1xb4-24iter_scenes-cls-224px.py',
        metrics=['accuracy/top1']),
    dict(
        name='seg',
        title='Semantic segmentation (mmseg UperNet) on LoveDA tiles, then a heat-diffusion '
        'visualisation, inference on a 5-band uint16 TIFF and ONNX export',
        config='configs/demo/upernet_rsvheat-demo_1xb2-40iter_loveda-samples-256x256.py',
        metrics=['mIoU', 'mF1', 'OA'],
        post=[['tools/analysis/visualize_heat.py', 'demo/data/scenes/1.png', '--config',
               '{config}', '--checkpoint', '{ckpt}', '--point', '350', '300', '--size', '512',
               '--out', '{work_dir}/heat_diffusion.png'],
              # a 5-band uint16 TIFF through the inferencer (bands 3-2-1 as RGB)
              ['tools/infer.py', '{config}', 'demo/data/multispectral/uint16-5channel.tif',
               '--weights', '{ckpt}', '--bands', '2', '1', '0', '--norm-range', '0', '2000',
               '--out-dir', '{work_dir}/infer'],
              # ONNX export, checked against PyTorch with ONNX Runtime
              ['tools/deployment/export_onnx.py', '{config}', '--checkpoint', '{ckpt}',
               '--part', 'segmentor', '--shape', '256', '256', '--out',
               '{work_dir}/onnx/upernet.onnx']]),
    dict(
        name='det',
        title='Object detection (mmdet Faster R-CNN + FPN) on a DIOR image, then tiled '
        'detection on the 1616x1565 DOTA scene',
        config='configs/demo/faster-rcnn_rsvheat-demo_1xb2-20iter_dior-samples-256x256.py',
        metrics=['pascal_voc/mAP', 'pascal_voc/AP50'],
        post=[['tools/infer.py', '{config}', 'demo/data/dota_scene/dota_demo.jpg', '--weights',
               '{ckpt}', '--tile', '1024', '--overlap', '200', '--score-thr', '0.05',
               '--out-dir', '{work_dir}/huge']]),
    dict(
        name='rotated',
        title='Rotated detection (mmrotate Oriented R-CNN) on DOTA patches, then tiled '
        'detection on the DOTA scene',
        pre=[['tools/dataset_converters/prepare_det_demo_data.py', '--out-dir',
              'work_dirs/demo_det_data']],
        config='configs/demo/oriented-rcnn-le90_rsvheat-demo_1xb2-20iter_dota-samples-128x128.py',
        metrics=['dota/mAP'],
        needs='mmrotate',
        post=[['tools/infer.py', '{config}', 'demo/data/dota_scene/dota_demo.jpg', '--weights',
               '{ckpt}', '--tile', '768', '--overlap', '128', '--score-thr', '0.3',
               '--out-dir', '{work_dir}/huge']]),
    dict(
        name='cd',
        title='Change detection (siamese RS-vHeat + UperNet) on planted changes, then tiled '
        'inference on a 1616x1565 pair',
        pre=[['tools/cd_make_planted_pairs.py', 'work_dirs/planted_cd', '--splits', 'train',
              'val', 'huge']],
        config='configs/demo/siam-upernet_rsvheat-demo_1xb4-100iter_planted-cd-128x128.py',
        metrics=['F1', 'IoU', 'precision', 'recall'],
        # From scratch: the demo's 40-iteration, 64 px pretraining does not
        # transfer to finding small planted changes in 100 iterations (F1
        # stays 0); with real RS-vHeat weights the LEVIR config starts from
        # them (configs/change_detection).
        pretrain_init=False,
        post=[['tools/infer.py', '{config}',
               'work_dirs/planted_cd/huge/A/dota_scene_dota_demo_0.png',
               'work_dirs/planted_cd/huge/B/dota_scene_dota_demo_0.png', '--weights', '{ckpt}',
               '--tile', '512', '--overlap', '64', '--out-dir', '{work_dir}/huge']]),
]


def parse_args():
    parser = argparse.ArgumentParser(description='rsvheat_mm main job on bundled samples')
    parser.add_argument('--stages', nargs='+', choices=[s['name'] for s in STAGES],
                        help='stages to run (default: all)')
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'demo'))
    parser.add_argument('--no-pretrain-init', action='store_true',
                        help='do not initialise downstream stages from the pretraining stage')
    parser.add_argument('--list', action='store_true', help='list the stages and exit')
    parser.add_argument('--iters', type=int, default=None,
                        help='train every stage for this many iterations instead of its '
                        "config's schedule: a quick end-to-end check of every stage and "
                        'step (the test-suite runs --iters 2); metrics are meaningless then')
    return parser.parse_args()


# the summary lines of tools/infer.py
INFER_SUMMARY = tuple(f'[{task}]' for task in ('classification', 'segmentation', 'change_detection',
                                               'detection', 'rotated_detection'))


def run(cmd, log_path):
    """Run a tool, streaming its output (progress) and keeping a log."""
    print('$ ' + ' '.join(cmd), flush=True)
    with open(log_path, 'a') as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        for line in proc.stdout:
            log.write(line)
            # show the mmengine progress lines and results, not the config dump
            progress = ' - mmengine - ' in line and any(
                key in line for key in ('Iter(', 'Epoch(', 'Saving', 'resumed', 'loaded'))
            if progress or line.startswith(('saved', 'stage ', 'Error', 'Traceback')) or \
                    line.startswith(INFER_SUMMARY):
                print('  ' + line.rstrip()[:220], flush=True)
        proc.wait()
    if proc.returncode != 0:
        tail = open(log_path).read()[-4000:]
        raise RuntimeError(f'command failed ({proc.returncode}): {" ".join(cmd)}\n{tail}')


def last_metrics(work_dir, keys):
    """Last logged value of each metric key, from mmengine's scalars.json.

    A key matches a logged name exactly or as its last ``/`` component
    (``mAP`` matches ``pascal_voc/mAP``, ``IoU`` does not match ``mIoU``).
    """
    found = {}
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                for key in keys:
                    for name, value in record.items():
                        if name == key or name.split('/')[-1] == key:
                            found[key] = value
    return found


def latest_checkpoint(work_dir):
    path = osp.join(work_dir, 'last_checkpoint')
    if not osp.exists(path):
        raise FileNotFoundError(f'no checkpoint in {work_dir}')
    return open(path).read().strip()


def main():
    args = parse_args()
    if args.list:
        for s in STAGES:
            print(f'{s["name"]:10s} {s["title"]}\n{"":10s} {s["config"]}')
        return
    names = args.stages or [s['name'] for s in STAGES]
    os.makedirs(args.work_dir, exist_ok=True)
    pretrained = None
    rows = []
    start_all = time.time()
    for i, stage in enumerate(s for s in STAGES if s['name'] in names):
        work_dir = osp.join(args.work_dir, stage['name'])
        print(f'\n=== [{i + 1}/{len(names)}] {stage["name"]}: {stage["title"]} ===', flush=True)
        start = time.time()
        needs = stage.get('needs')
        if needs and importlib.util.find_spec(needs) is None:
            # the stacks without mmrotate support everything else (README, Installation)
            print(f'skipped: {needs} is not installed', flush=True)
            rows.append((stage['name'], stage['title'], {'skipped': f'no {needs}'}, 0.0))
            continue
        # every demo config uses the pretraining demo's backbone size
        options = []
        if (pretrained and not stage.get('provides_pretrain') and not args.no_pretrain_init
                and stage.get('pretrain_init', True)):
            options += ['model.backbone.init_cfg.type=Pretrained',
                        f'model.backbone.init_cfg.checkpoint={pretrained}',
                        'model.backbone.init_cfg.prefix=backbone.']
        log = osp.join(args.work_dir, f'{stage["name"]}.log')
        open(log, 'w').close()
        for pre in stage.get('pre', []):
            run([sys.executable, *pre], log)
        cmd = [sys.executable, 'tools/train.py', stage['config'], '--work-dir', work_dir]
        if args.iters is not None:
            n = args.iters
            options += [f'train_cfg.max_iters={n}', f'train_cfg.val_interval={n}',
                        f'default_hooks.checkpoint.interval={n}',
                        'default_hooks.logger.interval=1']
        if options:
            cmd += ['--cfg-options', *options]
        run(cmd, log)
        ckpt = latest_checkpoint(work_dir)
        if stage.get('provides_pretrain'):
            pretrained = ckpt
        for post in stage.get('post', []):
            values = dict(config=stage['config'], ckpt=ckpt, work_dir=work_dir)
            run([sys.executable, *[a.format(**values) for a in post]], log)
        metrics = last_metrics(work_dir, stage['metrics'])
        rows.append((stage['name'], stage['title'], metrics, time.time() - start))
    lines = ['| stage | what | final metrics | time |', '|---|---|---|---|']
    for name, title, metrics, seconds in rows:
        shown = ', '.join(f'{k} {v:.4g}' if isinstance(v, (int, float)) else f'{k} {v}'
                          for k, v in metrics.items()) or '-'
        lines.append(f'| {name} | {title} | {shown} | {seconds:.0f} s |')
    summary = '\n'.join(lines)
    from rsvheat_mm.utils import atomic_write
    atomic_write(summary + f'\n\nTotal: {time.time() - start_all:.0f} s\n',
                 osp.join(args.work_dir, 'summary.md'))
    print('\n' + summary)
    print(f'\nTotal: {time.time() - start_all:.0f} s; outputs in {args.work_dir}')


if __name__ == '__main__':
    main()
