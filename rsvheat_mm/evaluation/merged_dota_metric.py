"""Full-scene evaluation of patch-wise rotated detection (DOTA, FAIR1M).

mmrotate's ``DOTAMetric(merge_patches=True)`` merges patch results into the
DOTA submission files but evaluates nothing; without merging it scores the
patches against the patch labels, where cut objects count twice and
duplicates from overlapping patches are never punished. This metric merges
the predictions of all patches of a scene (translate by the patch offset,
class-wise rotated NMS from mmcv) and scores them against the scene's own
DOTA label file with mmrotate's ``eval_rbbox_map`` -- the protocol of the
DOTA / FAIR1M servers, offline. ``format_only`` writes the merged Task1
files (``Task1_<class>.txt``) for the servers instead.

Listed in ``TOOLBOX_PLUGINS['mmrotate']`` (imports mmrotate).
"""
import contextlib
import itertools
import os
import os.path as osp
from collections import OrderedDict, defaultdict
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmcv.ops import batched_nms
from mmengine.logging import MMLogger
from mmrotate.evaluation import DOTAMetric, eval_rbbox_map
from mmrotate.structures.bbox import qbox2rbox, rbox2qbox

from rsvheat_mm.datasets.dota_split import parse_patch_id
from rsvheat_mm.datasets.rs_det_formats import (FAIR1M_CLASSES, FAIR1M_DOTA_CLASSES,
                                                match_class, read_dota_txt,
                                                write_dota_task1)
from rsvheat_mm.registry import METRICS


class _InProcessPool:
    """The slice of ``multiprocessing.Pool`` that ``eval_rbbox_map`` uses."""

    def __init__(self, processes=None):
        pass

    @staticmethod
    def starmap(func, iterable):
        return list(itertools.starmap(func, iterable))

    def close(self):
        pass


@contextlib.contextmanager
def _eval_in_process(enabled: bool):
    """Run ``eval_rbbox_map``'s per-image step in this process.

    mmrotate's ``eval_rbbox_map`` always starts a *spawn* pool, i.e. fresh
    interpreters that import torch and the toolboxes again (seconds per
    evaluation) even for ``nproc=1``; with one process the pool buys nothing.
    """
    if not enabled:
        yield
        return
    from mmrotate.evaluation.functional import mean_ap
    original = mean_ap.get_context
    mean_ap.get_context = lambda method=None: type(
        'InProcessContext', (), dict(Pool=_InProcessPool))
    try:
        yield
    finally:
        mean_ap.get_context = original


def merge_patch_predictions(results: Sequence[dict], iou_thr: float = 0.1,
                            box_type: str = 'rbox') -> Dict[str, dict]:
    """Merge per-patch predictions into per-scene predictions.

    Args:
        results: dicts with ``img_id`` (a patch name
            ``<scene>__<size>__<x>___<y>``), ``bboxes`` ((N, 5) rbox or
            (N, 8) qbox, patch coordinates), ``scores``, ``labels``.
        iou_thr (float): IoU of the class-wise NMS that removes the
            duplicates of overlapping patches.
        box_type (str): 'rbox' or 'qbox'.

    Returns:
        dict: scene id -> dict(bboxes, scores, labels) in scene coordinates.
    """
    dim = dict(rbox=5, qbox=8)[box_type]
    parts = defaultdict(list)
    for res in results:
        scene, x, y = parse_patch_id(res['img_id'])
        bboxes = np.asarray(res['bboxes'], np.float32).reshape(-1, dim).copy()
        if box_type == 'rbox':
            bboxes[:, :2] += (x, y)
        else:
            bboxes += np.tile(np.array([x, y], np.float32), 4)
        parts[scene].append((bboxes, np.asarray(res['scores'], np.float32).reshape(-1),
                             np.asarray(res['labels'], np.int64).reshape(-1)))
    merged = {}
    for scene, items in parts.items():
        bboxes = torch.from_numpy(np.concatenate([i[0] for i in items]))
        scores = torch.from_numpy(np.concatenate([i[1] for i in items]))
        labels = torch.from_numpy(np.concatenate([i[2] for i in items]))
        if len(bboxes):
            nms = dict(type='nms_rotated' if box_type == 'rbox' else 'nms_quadri',
                       iou_threshold=iou_thr)
            _, keep = batched_nms(bboxes, scores, labels, nms)
            bboxes, scores, labels = bboxes[keep], scores[keep], labels[keep]
        merged[scene] = dict(bboxes=bboxes.numpy(), scores=scores.numpy(),
                             labels=labels.numpy())
    return merged


@METRICS.register_module()
class MergedDOTAMetric(DOTAMetric):
    """mAP of patch predictions merged onto the full scenes.

    Args:
        scene_ann_dir (str, optional): Folder of the scenes' DOTA label files
            (``<scene>.txt``, the input of the patch split). Required unless
            ``format_only``.
        merge_iou_thr (float): IoU of the rotated NMS merging overlapping
            patches. Defaults to 0.1 (mmrotate's value).
        diff_thr (int): Scene objects with a difficulty above it are ignored
            (neither matched nor missed), as DOTA's evaluation does with
            ``difficult=1``. Defaults to 0.
        nproc (int): Processes of ``eval_rbbox_map``; 1 (default) computes
            in this process instead of mmrotate's spawned pool.
        iou_thrs, scale_ranges, metric, predict_box_type, format_only,
        outfile_prefix, eval_mode, collect_device, prefix: as
            :class:`mmrotate.evaluation.DOTAMetric`; ``outfile_prefix`` is
            the folder that receives the merged ``Task1_<class>.txt`` files.
    """

    def __init__(self, scene_ann_dir: Optional[str] = None, merge_iou_thr: float = 0.1,
                 diff_thr: int = 0, nproc: int = 1, **kwargs) -> None:
        for key in ('merge_patches', 'iou_thr'):
            if key in kwargs:
                raise TypeError(f'MergedDOTAMetric always merges patches; use '
                                f'merge_iou_thr instead of {key!r}')
        super().__init__(merge_patches=False, iou_thr=merge_iou_thr, **kwargs)
        if scene_ann_dir is None and not self.format_only:
            raise ValueError('MergedDOTAMetric needs scene_ann_dir (the scenes\' '
                             'DOTA label files) unless format_only=True')
        self.scene_ann_dir = scene_ann_dir
        self.diff_thr = diff_thr
        self.nproc = nproc

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            pred = sample['pred_instances']
            bboxes = pred['bboxes']
            bboxes = getattr(bboxes, 'tensor', bboxes)  # BaseBoxes or Tensor
            self.results.append(dict(img_id=sample['img_id'],
                                     bboxes=bboxes.detach().cpu().numpy(),
                                     scores=pred['scores'].detach().cpu().numpy(),
                                     labels=pred['labels'].detach().cpu().numpy()))

    def _load_scene(self, scene: str, classes: Sequence[str]) -> dict:
        path = osp.join(self.scene_ann_dir, scene + '.txt')
        if not osp.isfile(path):
            raise FileNotFoundError(f'MergedDOTAMetric: no label file for scene '
                                    f'{scene!r}: {path}')
        aliases = dict(zip(FAIR1M_CLASSES, FAIR1M_DOTA_CLASSES))
        polys, labels, ignore = [], [], []
        for obj in read_dota_txt(path)['objects']:
            polys.append(obj['poly'])
            labels.append(match_class(obj['name'], classes, path, aliases))
            ignore.append(obj['difficult'] > self.diff_thr)
        dim = 5 if self.predict_box_type == 'rbox' else 8
        boxes = torch.tensor(polys, dtype=torch.float32).reshape(-1, 8)
        if dim == 5:
            boxes = qbox2rbox(boxes) if len(boxes) else boxes.new_zeros((0, 5))
        boxes, labels, ignore = boxes.numpy(), np.array(labels, np.int64), np.array(ignore, bool)
        return dict(bboxes=boxes[~ignore], labels=labels[~ignore],
                    bboxes_ignore=boxes[ignore], labels_ignore=labels[ignore])

    def compute_metrics(self, results: list) -> dict:
        logger: MMLogger = MMLogger.get_current_instance()
        classes = self.dataset_meta['classes']
        merged = merge_patch_predictions(results, self.iou_thr, self.predict_box_type)
        logger.info(f'merged the predictions of {len(results)} patches into '
                    f'{len(merged)} scenes')
        if self.outfile_prefix is not None:
            self._write_task1(merged, classes, self.outfile_prefix)
            logger.info(f'DOTA Task1 files written to {self.outfile_prefix}')
        if self.format_only:
            return OrderedDict()

        scenes = sorted(merged)
        unseen = sorted(set(osp.splitext(f)[0] for f in os.listdir(self.scene_ann_dir)
                            if f.endswith('.txt')) - set(scenes))
        if unseen:
            logger.warning(f'{len(unseen)} labelled scenes have no patch in the '
                           f'evaluated data and are not scored, e.g. {unseen[:3]}')
        gts = [self._load_scene(s, classes) for s in scenes]
        dets = []
        for s in scenes:
            m = merged[s]
            dets.append([np.hstack([m['bboxes'][m['labels'] == c],
                                    m['scores'][m['labels'] == c, None]])
                         for c in range(len(classes))])
        eval_results = OrderedDict()
        mean_aps = []
        for iou_thr in self.iou_thrs:
            logger.info(f'\n{"-" * 15}full scenes, iou_thr: {iou_thr}{"-" * 15}')
            with _eval_in_process(self.nproc <= 1):
                mean_ap, _ = eval_rbbox_map(
                    dets, gts, scale_ranges=self.scale_ranges, iou_thr=iou_thr,
                    use_07_metric=self.use_07_metric, box_type=self.predict_box_type,
                    dataset=classes, logger=logger, nproc=max(self.nproc, 1))
            mean_aps.append(mean_ap)
            eval_results[f'AP{int(iou_thr * 100):02d}'] = round(float(mean_ap), 4)
        eval_results['mAP'] = float(np.mean(mean_aps))
        eval_results.move_to_end('mAP', last=False)
        return eval_results

    def _write_task1(self, merged: Dict[str, dict], classes: Sequence[str],
                     out_dir: str) -> List[str]:
        per_image = {}
        for scene, m in merged.items():
            boxes = torch.from_numpy(m['bboxes'])
            polys = rbox2qbox(boxes) if self.predict_box_type == 'rbox' else boxes
            per_image[scene] = [dict(label=lb, score=s, poly=p)
                                for lb, s, p in zip(m['labels'].tolist(), m['scores'].tolist(),
                                                    polys.tolist())]
        return write_dota_task1(out_dir, classes, per_image)
