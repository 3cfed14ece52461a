"""Drawing every test prediction into a folder of the run (``tools/test.py --show-dir``).

The toolboxes' own hooks disagree: mmdet writes ``<work_dir>/<timestamp>/<dir>/<image>``,
mmseg saves through the visualizer's backends
(``<dir>/vis_data/vis_image/test_0.png_0.png``, relative to the current
directory) and mmpretrain writes ``<dir>/<image>_<step>.png``. This hook
writes ``<work_dir>/<out_dir>/<image stem>.png`` for every task, with the
runner's (the config's) visualizer.
"""
import os
import os.path as osp
from typing import Optional, Sequence

from mmengine.hooks import Hook

from rsvheat_mm.registry import HOOKS

__all__ = ['TestVisualizationHook']


@HOOKS.register_module()
class TestVisualizationHook(Hook):
    """Draw each test prediction to ``<work_dir>/<out_dir>/<image stem>.png``.

    Args:
        out_dir (str): Folder, relative to the run's ``work_dir`` (an
            absolute path is used as it is).
        draw_gt (bool): Also draw the ground truth. Defaults to False.
        score_thr (float): Detections below this score are not drawn.
            Defaults to 0.3.
    """

    priority = 'LOW'

    def __init__(self, out_dir: str, draw_gt: bool = False, score_thr: float = 0.3) -> None:
        self.out_dir = out_dir
        self.draw_gt = draw_gt
        self.score_thr = score_thr
        self._dir: Optional[str] = None
        self._names = set()

    def before_test(self, runner) -> None:
        self._dir = osp.join(runner.work_dir, self.out_dir)
        os.makedirs(self._dir, exist_ok=True)
        self._names = set()

    def _name(self, sample, index: int) -> str:
        path = sample.get('img_path')
        stem = osp.splitext(osp.basename(path))[0] if path else f'{index:06d}'
        name, k = stem, 1
        while name in self._names:  # the same file name in two folders
            name, k = f'{stem}_{k}', k + 1
        self._names.add(name)
        return name

    def after_test_iter(self, runner, batch_idx: int, data_batch=None,
                        outputs: Optional[Sequence] = None) -> None:
        import mmcv
        vis = runner.visualizer
        for k, sample in enumerate(outputs or []):
            path = sample.get('img_path')
            if not path:
                continue
            name = self._name(sample, batch_idx * len(outputs) + k)
            img = mmcv.imread(path, channel_order='rgb')
            out_file = osp.join(self._dir, name + '.png')
            if hasattr(vis, 'visualize_cls'):  # mmpretrain
                vis.visualize_cls(img, sample, draw_gt=self.draw_gt, out_file=out_file,
                                  name=name)
            elif type(vis).__name__.startswith('Seg'):  # mmseg
                vis.add_datasample(name, img, sample, draw_gt=self.draw_gt, out_file=out_file)
            else:  # mmdet, mmrotate
                vis.add_datasample(name, img, sample, draw_gt=self.draw_gt, out_file=out_file,
                                   pred_score_thr=self.score_thr)
