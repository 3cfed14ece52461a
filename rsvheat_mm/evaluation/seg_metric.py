"""Segmentation metrics under the names remote-sensing papers report."""
from collections import OrderedDict
from typing import Dict, Sequence

import numpy as np
from mmengine.logging import print_log
from mmseg.evaluation import IoUMetric
from prettytable import PrettyTable

from rsvheat_mm.registry import METRICS


@METRICS.register_module()
class RSVHeatSegMetric(IoUMetric):
    """mmseg's :class:`IoUMetric` plus ``OA``, ``mF1`` and mean-class exclusion.

    * ``OA`` (overall accuracy, WHU-OPT-SAR/MCANet) is mmseg's ``aAcc``: the
      fraction of labelled pixels classified correctly. Both keys are
      reported.
    * ``mF1`` (ISPRS Potsdam/Vaihingen) is mmseg's ``mFscore`` with
      ``beta=1``; reported when ``'mFscore'`` is in ``iou_metrics``.
    * ``exclude_from_mean``: classes left out of the class means (``mIoU``,
      ``mF1``, ``mAcc``, ...) but still predicted and counted in ``OA`` --
      the ISPRS protocol averages F1 over the five classes without
      ``clutter``. The per-class table shows every class.

    Args:
        iou_metrics (Sequence[str]): Any of ``'mIoU'``, ``'mDice'``,
            ``'mFscore'``. Defaults to ``('mIoU', 'mFscore')``.
        exclude_from_mean (Sequence[str]): Class names. Defaults to ().
        **kwargs: Other arguments of :class:`mmseg.evaluation.IoUMetric`.
    """

    def __init__(self,
                 iou_metrics: Sequence[str] = ('mIoU', 'mFscore'),
                 exclude_from_mean: Sequence[str] = (),
                 **kwargs) -> None:
        super().__init__(iou_metrics=list(iou_metrics), **kwargs)
        self.exclude_from_mean = tuple(exclude_from_mean)

    def compute_metrics(self, results: list) -> Dict[str, float]:
        if self.format_only:
            return super().compute_metrics(results)
        class_names = list(self.dataset_meta['classes'])
        unknown = [c for c in self.exclude_from_mean if c not in class_names]
        if unknown:
            raise KeyError(f'{type(self).__name__}.exclude_from_mean: {unknown} are not '
                           f'classes of the dataset {class_names}')
        keep = [i for i, c in enumerate(class_names) if c not in self.exclude_from_mean]

        intersect, union, pred_area, label_area = (sum(r) for r in zip(*results))
        per_class = self.total_area_to_metrics(intersect, union, pred_area, label_area,
                                               self.metrics, self.nan_to_num, self.beta)
        metrics = OrderedDict(aAcc=float(np.round(per_class.pop('aAcc') * 100, 2)))
        for key, value in per_class.items():
            metrics['m' + key] = float(np.round(np.nanmean(value[keep]) * 100, 2))
        metrics['OA'] = metrics['aAcc']
        if 'mFscore' in metrics:
            metrics['mF1'] = metrics['mFscore']

        table = PrettyTable()
        marks = ['' if i in keep else ' (not in mean)' for i in range(len(class_names))]
        table.add_column('Class', [c + m for c, m in zip(class_names, marks)])
        for key, value in per_class.items():
            table.add_column(key, np.round(value * 100, 2).tolist())
        print_log('per class results:\n' + table.get_string(), logger='current')
        return dict(metrics)
