"""Scene classification: a label per image, or a land-use grid of a large scene.

A tiled scene gets one label per window (windows do not overlap unless
asked); the grid is drawn on the scene and, for georeferenced inputs,
written as GeoJSON polygons in the source CRS. Each window records the
fraction of its pixels that were nodata.
"""
import os.path as osp
from typing import Dict

import numpy as np
import torch

from ..geo_io import detections_to_geojson, is_georeferenced, write_json
from ..tiling import run_windows
from .base import BaseRSVHeatInferencer

__all__ = ['ClassificationInferencer']


class ClassificationInferencer(BaseRSVHeatInferencer):
    """Scene classification with any rsvheat_mm mmpretrain config (see
    :class:`~rsvheat_mm.apis.RSVHeatInferencer`)."""

    tasks = ('classification', )
    default_overlap = 0  # a grid of labels

    def _predict_tiled(self, reader, plan, info, batch_size, blend, pred_dir, keep):
        samples, fractions, nonfinite = run_windows(
            self.model, self.window_pipeline, reader, plan, batch_size, self.collate_fn,
            self.show_progress)
        info.update(windows=list(plan), nodata_fractions=fractions, nonfinite_pixels=nonfinite)
        return samples

    def _draw(self, rgb, pred, info, draw_pred, score_thr, opacity, show, wait_time):
        classes = self.dataset_meta.get('classes')
        if not info.get('tiled'):
            return self.visualizer.visualize_cls(
                rgb, pred, classes=classes, draw_gt=False, draw_pred=draw_pred, show=show,
                wait_time=wait_time, name=info['name'])
        vis = self.visualizer
        vis.set_image(rgb)
        scale = info.get('vis_scale', 1.)
        palette = self.dataset_meta.get('palette') or [[255, 0, 0]]
        for (x0, y0, x1, y1), sample in zip(info['windows'], pred):
            label = int(sample.pred_label.item())
            color = tuple(int(c) for c in palette[label % len(palette)])
            x0, y0, x1, y1 = (v * scale for v in (x0, y0, x1, y1))
            vis.draw_bboxes(torch.tensor([[x0 + 2, y0 + 2, x1 - 2, y1 - 2]]),
                            edge_colors=[color], line_widths=2)
            text = classes[label] if classes else str(label)
            vis.draw_texts(f'{text} {float(sample.pred_score.max()):.2f}',
                           torch.tensor([x0 + 6, y0 + 6]), colors=[color], font_sizes=12)
        return vis.get_image()

    def pred_to_dict(self, pred, info, score_thr: float = 0.3) -> dict:
        record = super().pred_to_dict(pred, info, score_thr)
        classes = self.dataset_meta.get('classes')
        entries = []
        for s in (pred if isinstance(pred, list) else [pred]):
            label = int(s.pred_label.item())
            entries.append(dict(pred_label=label, pred_score=float(s.pred_score[label]),
                                pred_class=classes[label] if classes else None,
                                pred_scores=[round(float(v), 6) for v in s.pred_score]))
        if not info.get('tiled'):
            record.update(entries[0])
            nodata = info.get('nodata_mask')
            if nodata is not None and nodata.any():
                record['nodata_fraction'] = round(float(nodata.mean()), 6)
            return record
        for e, w, f in zip(entries, info['windows'], info['nodata_fractions']):
            e['window'] = list(w)
            if f:
                e['nodata_fraction'] = round(f, 6)
        record['windows'] = entries
        return record

    def _write_pred(self, record, info, pred_dir) -> Dict[str, str]:
        files = dict(json=osp.join(pred_dir, info['name'] + '.json'))
        geo = info.get('geo')
        json_record = {k: v for k, v in record.items() if k != 'files'}
        if is_georeferenced(geo):
            json_record.update(crs=geo.get('crs'), transform=list(geo['transform']))
            if info.get('tiled'):
                files['geojson'] = osp.join(pred_dir, info['name'] + '.geojson')
                windows = np.asarray([e['window'] for e in record['windows']], np.float64)
                write_json(files['geojson'], detections_to_geojson(
                    windows, [e['pred_score'] for e in record['windows']],
                    [e['pred_label'] for e in record['windows']],
                    self.dataset_meta.get('classes'), geo,
                    properties=dict(source=info.get('path'))))
        write_json(files['json'], json_record)
        return files
