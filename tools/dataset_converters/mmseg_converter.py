#!/usr/bin/env python
"""Run one of mmsegmentation's own dataset converters (installed with mmseg).

ISPRS Potsdam and iSAID need no converter of ours: mmseg ships them (inside
the installed package, under ``mmseg/.mim/tools/dataset_converters``), and
this script finds and runs them with the given arguments::

    python tools/dataset_converters/mmseg_converter.py potsdam data/potsdam_raw -o data/potsdam
    python tools/dataset_converters/mmseg_converter.py isaid data/iSAID_raw -o data/iSAID
    python tools/dataset_converters/mmseg_converter.py --list

Pillow compatibility: mmseg's converters save label maps as
``Image.fromarray(ids, mode='P')``, a palette image *without* palette
entries. Recent Pillow (13.0 in this environment) writes such an image as a
1-bit PNG, so every class id > 0 becomes 1 -- the iSAID labels come out as
0/1. While a converter runs, palette-less P images get an identity
(grayscale) palette, which keeps the ids as they are.
"""
import contextlib
import os
import os.path as osp
import runpy
import sys
from typing import Optional, Sequence


def converter_dir() -> str:
    import mmseg
    return osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', 'dataset_converters')


def available() -> list:
    folder = converter_dir()
    if not osp.isdir(folder):
        return []
    return sorted(f[:-3] for f in os.listdir(folder) if f.endswith('.py'))


def converter_path(name: str) -> str:
    path = osp.join(converter_dir(), f'{name}.py')
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'mmseg has no dataset converter {name!r} at {path}; available: {available()} '
            '(the tools ship inside the mmseg package when installed with pip/mim)')
    return path


@contextlib.contextmanager
def identity_palette_for_p_images():
    """Give ``Image.fromarray(..., mode='P')`` results a 256-entry palette."""
    from PIL import Image
    original = Image.fromarray

    def fromarray(obj, mode=None):
        img = original(obj, mode)
        if img.mode == 'P' and not img.getpalette():
            img.putpalette([v for i in range(256) for v in (i, i, i)])
        return img

    Image.fromarray = fromarray
    try:
        yield
    finally:
        Image.fromarray = original


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help'):
        print(__doc__)
        return
    if argv[0] == '--list':
        print('\n'.join(available()))
        return
    path = converter_path(argv[0])
    old_argv = sys.argv
    sys.argv = [path] + argv[1:]
    try:
        with identity_palette_for_p_images():
            runpy.run_path(path, run_name='__main__')
    finally:
        sys.argv = old_argv


if __name__ == '__main__':
    main()
