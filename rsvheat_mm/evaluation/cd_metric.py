"""Binary change-detection metric (mmseg): F1, precision, recall, IoU of "changed"."""
import os.path as osp
from collections import OrderedDict
from typing import Dict, Optional, Sequence

import mmcv
import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.logging import MMLogger, print_log
from mmengine.utils import mkdir_or_exist
from mmseg.evaluation.metrics import IoUMetric
from prettytable import PrettyTable

from rsvheat_mm.registry import METRICS


def change_scores(tp: float, fp: float, fn: float, tn: float,
                  zero_division: float = 0.0) -> Dict[str, float]:
    """Change-detection scores (fractions in [0, 1]) from a 2x2 confusion matrix.

    A score whose denominator is 0 (e.g. precision with no predicted change)
    is ``zero_division``.
    """

    def div(a, b):
        return a / b if b > 0 else zero_division

    precision = div(tp, tp + fp)
    recall = div(tp, tp + fn)
    f1 = div(2 * tp, 2 * tp + fp + fn)  # = 2PR / (P + R) without 0/0 issues
    total = tp + fp + fn + tn
    oa = div(tp + tn, total)
    # Cohen's kappa: agreement beyond chance given both marginals.
    pe = div((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn), total * total)
    kappa = div(oa - pe, 1 - pe) if total > 0 else zero_division
    iou_changed = div(tp, tp + fp + fn)
    iou_unchanged = div(tn, tn + fp + fn)
    return OrderedDict(F1=f1, precision=precision, recall=recall, IoU=iou_changed,
                       OA=oa, kappa=kappa, IoU_unchanged=iou_unchanged,
                       mIoU=(iou_changed + iou_unchanged) / 2)


@METRICS.register_module()
class CDChangeMetric(IoUMetric):
    """F1, precision, recall and IoU of the *changed* class (plus OA, kappa, mIoU).

    Accumulates the confusion counts of every image (mmseg's
    ``IoUMetric.intersect_and_union``, pixels equal to ``ignore_index`` in
    the label are skipped) and scores the dataset as a whole, as LEVIR-CD
    papers do. Results are percentages, e.g. ``F1=93.48``.

    Args:
        change_index (int): Label of the "changed" class. Defaults to 1.
        ignore_index (int): Label ignored in evaluation. Defaults to 255.
        zero_division (float): Value (fraction) of a score whose
            denominator is empty. Defaults to 0.
        output_dir (str, optional): Write each predicted change mask as a
            0/255 PNG named after date A (atomically, via mmcv/mmengine fileio).
        format_only (bool): Only write masks (test set without labels).
        collect_device (str): See :class:`mmengine.evaluator.BaseMetric`.
        prefix (str, optional): See :class:`mmengine.evaluator.BaseMetric`.
    """

    def __init__(self,
                 change_index: int = 1,
                 ignore_index: int = 255,
                 zero_division: float = 0.0,
                 output_dir: Optional[str] = None,
                 format_only: bool = False,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(ignore_index=ignore_index, iou_metrics=['mIoU'],
                         collect_device=collect_device, output_dir=None,
                         format_only=format_only, prefix=prefix)
        self.change_index = change_index
        self.zero_division = zero_division
        self.output_dir = output_dir
        if output_dir and is_main_process():
            mkdir_or_exist(output_dir)

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        num_classes = len(self.dataset_meta['classes']) if self.dataset_meta else 2
        if not 0 <= self.change_index < num_classes:
            raise ValueError(f'CDChangeMetric: change_index {self.change_index} is not a '
                             f'class of {self.dataset_meta.get("classes")}')
        for sample in data_samples:
            pred = sample['pred_sem_seg']['data'].squeeze()
            if not self.format_only:
                if 'gt_sem_seg' not in sample:
                    raise KeyError(f'CDChangeMetric: no change label for {sample.get("img_path")}; '
                                   'set format_only=True for unlabeled pairs')
                label = sample['gt_sem_seg']['data'].squeeze().to(pred)
                counts = self.intersect_and_union(pred, label, num_classes, self.ignore_index)
                self.results.append(tuple(c.to(torch.float64) for c in counts))
            if self.output_dir:
                name = osp.splitext(osp.basename(sample['img_path']))[0]
                mask = (pred == self.change_index).cpu().numpy().astype(np.uint8) * 255
                mmcv.imwrite(mask, osp.join(osp.abspath(self.output_dir), f'{name}.png'))

    def confusion(self, results: list) -> Dict[str, float]:
        """``tp``, ``fp``, ``fn``, ``tn`` of the change class over ``results``."""
        intersect, _, pred_area, label_area = (torch.stack(r).sum(0) for r in zip(*results))
        c = self.change_index
        tp = float(intersect[c])
        fp = float(pred_area[c]) - tp
        fn = float(label_area[c]) - tp
        tn = float(label_area.sum()) - tp - fp - fn
        return dict(tp=tp, fp=fp, fn=fn, tn=tn)

    def compute_metrics(self, results: list) -> Dict[str, float]:
        logger = MMLogger.get_current_instance()
        if self.format_only:
            logger.info(f'change masks written to {self.output_dir}')
            return OrderedDict()
        cm = self.confusion(results)
        scores = change_scores(**cm, zero_division=self.zero_division)
        table = PrettyTable(field_names=['metric', 'value'])
        for key, value in scores.items():
            table.add_row([key, f'{value * 100:.2f}'])
        table.add_row(['TP / FP / FN / TN',
                       ' / '.join(str(int(cm[k])) for k in ('tp', 'fp', 'fn', 'tn'))])
        print_log('change-detection results (changed class):\n' + table.get_string(),
                  logger=logger)
        return OrderedDict((k, round(v * 100, 2)) for k, v in scores.items())
