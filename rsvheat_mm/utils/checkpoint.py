"""Safe checkpoint loading for mmengine on torch >= 2.6.

(The ``safe_checkpoint`` patch of :mod:`rsvheat_mm.runtime_compat` routes
mmengine's local checkpoint loading through :func:`load_checkpoint_safely`.)

torch >= 2.6 unpickles checkpoints with ``weights_only=True`` by default and
rejects everything but tensors and plain containers. mmengine 0.10.7 saves a
little more (its ``HistoryBuffer`` log state and NumPy arrays/scalars in the
message hub), so its ``resume``/``load_from`` break. Turning the safety off
(``weights_only=False`` or ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``) would let a
checkpoint run arbitrary code, so instead we keep ``weights_only=True`` and
allow-list, only for the duration of the load, exactly the types mmengine
itself writes. Any other pickled global is refused with
:class:`UnsafeCheckpointError` before it is imported or called.

Foreign checkpoints (official vHeat / RS-vHeat releases) also carry their
training configuration as a yacs ``CfgNode`` or an ``argparse.Namespace``;
``load_checkpoint_safely(..., allow_metadata=True)`` reads those as plain,
inert dicts instead of refusing them -- still without importing or calling
anything outside the allow-list.
"""
import io
import os
import os.path as osp
import pickle

import torch

__all__ = ['UnsafeCheckpointError', 'load_checkpoint_safely', 'safe_globals']


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds a pickled object outside the allow-list."""


def safe_globals():
    """The globals mmengine's Runner writes into checkpoints."""
    import numpy as np
    allowed = [np.ndarray, np.dtype]
    # NumPy moved its private core module in 2.0; arrays and scalars pickle
    # through whichever one the writer had.
    for mod_name in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        try:
            mod = __import__(mod_name, fromlist=['_reconstruct', 'scalar'])
        except ImportError:
            continue
        for fn in ('_reconstruct', 'scalar'):
            obj = getattr(mod, fn, None)
            if obj is not None:
                allowed.append((obj, f'{mod_name}.{fn}'))
    # numpy >= 1.25 pickles dtypes through their numpy.dtypes classes.
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        for name in dir(dtypes):
            obj = getattr(dtypes, name)
            if isinstance(obj, type) and issubclass(obj, np.dtype):
                allowed.append(obj)
    from mmengine.logging.history_buffer import HistoryBuffer
    allowed.append(HistoryBuffer)
    # HistoryBuffer pickles its statistics methods (min/max/mean/current) as
    # ``getattr(HistoryBuffer, 'min')``. Allowing the builtin getattr would
    # let a file walk to any attribute (``__globals__``, ``__builtins__``);
    # this stand-in resolves only those methods.
    allowed.append((_history_buffer_getattr, 'builtins.getattr'))
    return allowed


def _history_buffer_getattr(obj, name):
    from mmengine.logging.history_buffer import HistoryBuffer
    value = getattr(HistoryBuffer, name, None) if obj is HistoryBuffer else None
    if (value is None or not callable(value)
            or value not in HistoryBuffer._statistics_methods.values()
            and name not in ('min', 'max', 'mean', 'current')):
        raise pickle.UnpicklingError(
            f'getattr({getattr(obj, "__name__", type(obj).__name__)}, {name!r}) '
            'is not allowed in a checkpoint (only HistoryBuffer statistics)')
    return value


# Metadata types of foreign checkpoints, read as plain dicts (never built).
_METADATA_TYPES = {
    ('yacs.config', 'CfgNode'),
    ('argparse', 'Namespace'),
    ('easydict', 'EasyDict'),
    ('addict.addict', 'Dict'),
    ('mmengine.config.config', 'ConfigDict'),
    ('mmcv.utils.config', 'ConfigDict'),
}


class _InertMetadata(dict):
    """Stand-in for an allow-listed metadata object: a dict, nothing more."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.update(state)

    def __reduce__(self):
        return (dict, (dict(self), ))


def _metadata_stub(module, name):
    return type(name, (_InertMetadata, ), {'__module__': 'rsvheat_mm.inert.' + module})


def _with_metadata_stubs(filename):
    """Find the metadata globals in ``filename`` and map them to stubs."""
    import pickletools
    import zipfile
    names = set()
    if zipfile.is_zipfile(filename):
        with zipfile.ZipFile(filename) as zf:
            data = [zf.read(n) for n in zf.namelist() if n.endswith('data.pkl')]
    else:
        with open(filename, 'rb') as f:
            data = [f.read()]
    for blob in data:
        try:
            ops = list(pickletools.genops(io.BytesIO(blob)))
        except Exception:
            continue
        strings = []
        for op, arg, _ in ops:
            if op.name == 'GLOBAL':
                names.add(tuple(arg.split(' ', 1)))
            elif op.name in ('SHORT_BINUNICODE', 'BINUNICODE', 'UNICODE'):
                strings.append(arg)
            elif op.name == 'STACK_GLOBAL' and len(strings) >= 2:
                names.add((strings[-2], strings[-1]))
    stubs = []
    for module, name in names & _METADATA_TYPES:
        stubs.append((_metadata_stub(module, name), f'{module}.{name}'))
    return stubs


def load_checkpoint_safely(filename, map_location='cpu', allow_metadata=False):
    """``torch.load`` with weights-only unpickling and mmengine's allow-list.

    Args:
        filename (str | os.PathLike | file-like): The checkpoint.
        map_location: As for :func:`torch.load`.
        allow_metadata (bool): Also accept the config objects that foreign
            releases pickle (yacs ``CfgNode``, ``argparse.Namespace``, ...),
            read as inert dicts. Defaults to False.

    Raises:
        FileNotFoundError: ``filename`` does not exist.
        UnsafeCheckpointError: the file carries any other pickled object;
            nothing of it is executed.
    """
    name = os.fspath(filename) if isinstance(filename, (str, os.PathLike)) else repr(filename)
    if isinstance(filename, (str, os.PathLike)) and not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file not found: {name}')
    allowed = safe_globals()
    if allow_metadata and isinstance(filename, (str, os.PathLike)):
        allowed += _with_metadata_stubs(filename)
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        detail = str(err).strip().splitlines()
        detail = next((line for line in detail if 'GLOBAL' in line or 'Unsupported' in line),
                      detail[0] if detail else '')
        raise UnsafeCheckpointError(
            f'Refusing to load checkpoint {name}: it contains a pickled object '
            f'that is not a tensor, a plain container or one of the types '
            f'mmengine saves ({detail}). Unpickling it could run arbitrary '
            'code, so it was not loaded. If you produced this file yourself '
            'and trust it, re-save only its state dict: '
            "torch.save({'state_dict': sd}, path).") from None
