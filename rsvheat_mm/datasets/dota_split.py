"""Split huge DOTA-format scenes (DOTA, FAIR1M after conversion) into patches.

The window layout and the assignment of objects to windows are mmrotate's own
(``tools/data/dota/split/img_split.py``, shipped inside the mmrotate 1.x
package under ``.mim/``): windows of ``size`` px overlapping by ``gap`` px,
the last row/column shifted back to the border, windows kept when the image
covers at least ``img_rate_thr`` of them, and an object kept in a window when
at least ``iof_thr`` of its polygon lies inside (objects cut by the window
get difficulty 2, as in mmrotate). This module loads those functions from the
installed mmrotate, reads the annotations with clear errors, and writes the
patches atomically under mmrotate's naming ``<scene>__<size>__<x>___<y>``,
which is what merging patch results back onto the scene relies on
(:func:`parse_patch_id`, ``MergedDOTAMetric``).
"""
import importlib.util
import os
import os.path as osp
import re
import shutil
from functools import partial
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from rsvheat_mm.utils.fileio import atomic_write
from .rs_det_formats import dota_lines, read_dota_txt

__all__ = ['split_scene', 'split_dota_dataset', 'patch_id', 'parse_patch_id',
           'multiscale_windows', 'load_mmrotate_img_split']

IMG_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.tif', '.tiff', '.bmp')
_PATCH_ID = re.compile(r'^(?P<scene>.+)__(?P<size>\d+)__(?P<x>\d+)___(?P<y>\d+)$')
_split_module = None


def load_mmrotate_img_split():
    """mmrotate's ``img_split.py`` (not an importable module: a packaged tool)."""
    global _split_module
    if _split_module is None:
        spec = importlib.util.find_spec('mmrotate')
        if spec is None or not spec.submodule_search_locations:
            raise ImportError('patch splitting uses mmrotate 1.x\'s '
                              'img_split.py; install mmrotate (make install)')
        path = osp.join(spec.submodule_search_locations[0], '.mim', 'tools',
                        'data', 'dota', 'split', 'img_split.py')
        if not osp.isfile(path):
            raise ImportError(f'mmrotate\'s patch-split tool not found at {path}; '
                              'reinstall mmrotate 1.x from its wheel')
        mod_spec = importlib.util.spec_from_file_location(
            'rsvheat_mm._mmrotate_img_split', path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
        _split_module = module
    return _split_module


def patch_id(scene_id: str, size: int, x: int, y: int) -> str:
    """mmrotate's patch name: ``<scene>__<size>__<x>___<y>``."""
    return f'{scene_id}__{size}__{x}___{y}'


def parse_patch_id(img_id: str) -> Tuple[str, int, int]:
    """``(scene id, x offset, y offset)`` of a patch named by :func:`patch_id`."""
    m = _PATCH_ID.match(img_id)
    if m is None:
        raise ValueError(f'{img_id!r} is not a patch name <scene>__<size>__<x>___<y> '
                         '(made by tools/dataset_converters/dota_split.py)')
    return m['scene'], int(m['x']), int(m['y'])


def multiscale_windows(sizes: Sequence[int], gaps: Sequence[int],
                       rates: Sequence[float] = (1.0, )) -> Tuple[List[int], List[int]]:
    """Window sizes/gaps for each rate (mmrotate: ``size / rate``)."""
    if len(sizes) != len(gaps):
        raise ValueError(f'sizes {sizes} and gaps {gaps} differ in length')
    if len(sizes) != 1 and len(rates) != 1:
        raise ValueError('use several sizes or several rates, not both')
    out_sizes, out_gaps = [], []
    for rate in rates:
        out_sizes += [int(s / rate) for s in sizes]
        out_gaps += [int(g / rate) for g in gaps]
    for s, g in zip(out_sizes, out_gaps):
        if not 0 <= g < s:
            raise ValueError(f'gap {g} must be >= 0 and smaller than the window {s}')
    return out_sizes, out_gaps


def _scene_info(img_path: str, ann_path: Optional[str]) -> dict:
    """The scene record mmrotate's split functions expect."""
    img = cv2.imread(img_path, cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f'cannot read image {img_path}')
    scene_id = osp.splitext(osp.basename(img_path))[0]
    bboxes, labels, diffs = np.zeros((0, 8), np.float32), [], np.zeros((0, ), np.int64)
    gsd = None
    if ann_path is not None:
        if not osp.isfile(ann_path):
            raise FileNotFoundError(f'{img_path}: label file {ann_path} not found')
        ann = read_dota_txt(ann_path)
        gsd = ann['gsd']
        if ann['objects']:
            bboxes = np.array([o['poly'] for o in ann['objects']], np.float32)
            labels = [o['name'] for o in ann['objects']]
            diffs = np.array([o['difficult'] for o in ann['objects']], np.int64)
    info = dict(id=scene_id, filename=osp.basename(img_path), width=img.shape[1],
                height=img.shape[0], gsd=gsd,
                ann=dict(bboxes=bboxes, labels=labels, diffs=diffs))
    return info, img


def split_scene(img_path: str, ann_path: Optional[str], save_dir: str,
                sizes: Sequence[int] = (1024, ), gaps: Sequence[int] = (200, ),
                img_rate_thr: float = 0.6, iof_thr: float = 0.7,
                padding: bool = True, padding_value=0,
                save_ext: str = '.png') -> List[dict]:
    """Cut one scene into patches under ``save_dir/images`` (+ ``annfiles``).

    Args:
        img_path (str): The scene image.
        ann_path (str, optional): Its DOTA label file; None for unlabelled
            (test) scenes, which then get no ``annfiles``.
        save_dir (str): Output root.
        sizes, gaps: Window sizes and overlaps in px (mmrotate's ``gaps``).
        img_rate_thr (float): Keep windows at least this much inside the image.
        iof_thr (float): Keep an object in a window when at least this part
            of it is inside.
        padding (bool): Pad border patches to the full window size.
        padding_value: Pad value (one number or one per channel).
        save_ext (str): Patch image format.

    Returns:
        list[dict]: One record per patch: ``id``, ``scene``, ``x_start``,
        ``y_start``, ``width``, ``height``, ``num_objects``.
    """
    mod = load_mmrotate_img_split()
    info, img = _scene_info(img_path, ann_path)
    windows = mod.get_sliding_window(info, list(sizes), list(gaps), img_rate_thr)
    window_anns = mod.get_window_obj(info, windows, iof_thr)
    img_dir = osp.join(save_dir, 'images')
    ann_dir = osp.join(save_dir, 'annfiles')
    records = []
    for (x0, y0, x1, y1), ann in zip(windows.tolist(), window_anns):
        pid = patch_id(info['id'], x1 - x0, x0, y0)
        patch = img[y0:y1, x0:x1]
        if padding and (patch.shape[0] < y1 - y0 or patch.shape[1] < x1 - x0):
            canvas = np.empty((y1 - y0, x1 - x0, patch.shape[2]), dtype=patch.dtype)
            canvas[...] = padding_value
            canvas[:patch.shape[0], :patch.shape[1]] = patch
            patch = canvas
        ok, buf = cv2.imencode(save_ext, patch)
        if not ok:
            raise RuntimeError(f'could not encode patch {pid} as {save_ext}')
        atomic_write(buf.tobytes(), osp.join(img_dir, pid + save_ext))
        if ann_path is not None:
            polys = mod.translate(ann['bboxes'], -x0, -y0)
            # Cut objects get difficulty 2 as in mmrotate, but decided on the
            # geometry: mmrotate's float32 iof < 1 also flags whole objects.
            cut = ((polys < 0) | (polys[:, 0::2].max(1, initial=0)[:, None] > x1 - x0)
                   | (polys[:, 1::2].max(1, initial=0)[:, None] > y1 - y0)).any(1)
            objects = [
                dict(poly=poly.tolist(), name=name, difficult=2 if c else int(diff))
                for poly, name, diff, c in zip(polys, ann['labels'], ann['diffs'], cut)
            ]
            lines = dota_lines(objects)
            atomic_write(''.join(line + '\n' for line in lines),
                         osp.join(ann_dir, pid + '.txt'))
        records.append(dict(id=pid, scene=info['id'], x_start=x0, y_start=y0,
                            width=patch.shape[1], height=patch.shape[0],
                            num_objects=len(ann['labels'])))
    return records


def _split_task(task, **kwargs):
    img_path, ann_path = task
    return split_scene(img_path, ann_path, **kwargs)


def split_dota_dataset(img_dirs: Sequence[str], ann_dirs: Optional[Sequence[str]],
                       save_dir: str, sizes: Sequence[int] = (1024, ),
                       gaps: Sequence[int] = (200, ), rates: Sequence[float] = (1.0, ),
                       img_rate_thr: float = 0.6, iof_thr: float = 0.7,
                       padding: bool = True, padding_value=0, save_ext: str = '.png',
                       nproc: int = 1, overwrite: bool = False) -> List[dict]:
    """Split every scene of one or more DOTA-format folders.

    ``ann_dirs[i]`` holds ``<scene>.txt`` for each image of ``img_dirs[i]``
    (None: unlabelled). Writes ``save_dir/images`` and ``save_dir/annfiles``;
    refuses a non-empty ``save_dir`` unless ``overwrite`` (which first
    removes the previous ``images``/``annfiles``).
    """
    from mmengine.utils import track_parallel_progress, track_progress
    if ann_dirs is not None and len(ann_dirs) != len(img_dirs):
        raise ValueError(f'{len(img_dirs)} image dirs but {len(ann_dirs)} label dirs')
    if osp.isdir(save_dir) and os.listdir(save_dir):
        if not overwrite:
            raise FileExistsError(f'{save_dir} is not empty; pass overwrite=True '
                                  '(--overwrite) to replace its patches')
        for sub in ('images', 'annfiles'):
            shutil.rmtree(osp.join(save_dir, sub), ignore_errors=True)
    sizes, gaps = multiscale_windows(sizes, gaps, rates)
    tasks = []
    for i, img_dir in enumerate(img_dirs):
        if not osp.isdir(img_dir):
            raise FileNotFoundError(f'image dir {img_dir} not found')
        ann_dir = ann_dirs[i] if ann_dirs is not None else None
        if ann_dir is not None and not osp.isdir(ann_dir):
            raise FileNotFoundError(f'label dir {ann_dir} not found')
        for name in sorted(os.listdir(img_dir)):
            stem, ext = osp.splitext(name)
            if ext.lower() not in IMG_EXTENSIONS:
                continue
            ann = osp.join(ann_dir, stem + '.txt') if ann_dir is not None else None
            tasks.append((osp.join(img_dir, name), ann))
    if not tasks:
        raise FileNotFoundError(f'no images ({", ".join(IMG_EXTENSIONS)}) in {list(img_dirs)}')
    func = partial(_split_task, save_dir=save_dir, sizes=sizes, gaps=gaps,
                   img_rate_thr=img_rate_thr, iof_thr=iof_thr, padding=padding,
                   padding_value=padding_value, save_ext=save_ext)
    if nproc > 1:
        per_scene = track_parallel_progress(func, tasks, nproc)
    else:
        per_scene = track_progress(func, tasks)
    return [rec for recs in per_scene for rec in recs]
