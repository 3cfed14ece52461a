"""RSVHeatSegMetric: OA, mF1 and class exclusion against hand-computed values."""
import numpy as np
import pytest
import torch


def _sample(pred, gt):
    return dict(pred_sem_seg=dict(data=torch.tensor(pred)[None]),
                gt_sem_seg=dict(data=torch.tensor(gt)[None]))


def _evaluate(metric, samples):
    metric.process({}, samples)
    return metric.compute_metrics(metric.results)


def test_oa_mf1_and_exclusion():
    from rsvheat_mm.evaluation.seg_metric import RSVHeatSegMetric
    gt = np.array([[0, 0, 1, 1], [2, 2, 2, 255]])
    pred = np.array([[0, 1, 1, 1], [2, 2, 0, 0]])
    classes = ('a', 'b', 'clutter')

    metric = RSVHeatSegMetric(iou_metrics=['mIoU', 'mFscore'])
    metric.dataset_meta = dict(classes=classes)
    out = _evaluate(metric, [_sample(pred, gt)])
    # 7 labelled pixels (255 ignored), 5 correct
    assert out['OA'] == out['aAcc'] == pytest.approx(round(500 / 7, 2))
    # per class (tp, fp, fn): a (1, 1, 1), b (2, 1, 0), clutter (2, 0, 1)
    f1 = [2 * 1 / (2 * 1 + 1 + 1), 2 * 2 / (2 * 2 + 1 + 0), 2 * 2 / (2 * 2 + 0 + 1)]
    iou = [1 / 3, 2 / 3, 2 / 3]
    assert out['mF1'] == out['mFscore'] == pytest.approx(round(np.mean(f1) * 100, 2))
    assert out['mIoU'] == pytest.approx(round(np.mean(iou) * 100, 2))

    metric = RSVHeatSegMetric(iou_metrics=['mIoU', 'mFscore'], exclude_from_mean=['clutter'])
    metric.dataset_meta = dict(classes=classes)
    out = _evaluate(metric, [_sample(pred, gt)])
    assert out['mF1'] == pytest.approx(round(np.mean(f1[:2]) * 100, 2))
    assert out['mIoU'] == pytest.approx(round(np.mean(iou[:2]) * 100, 2))
    assert out['OA'] == pytest.approx(round(500 / 7, 2))  # OA still counts clutter

    metric = RSVHeatSegMetric(exclude_from_mean=['Clutter'])
    metric.dataset_meta = dict(classes=classes)
    with pytest.raises(KeyError, match="'Clutter'.*not classes"):
        _evaluate(metric, [_sample(pred, gt)])
