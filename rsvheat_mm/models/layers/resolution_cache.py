"""A bounded cache for tensors that depend only on weights and a resolution.

RS-vHeat's heat decay ``exp(-K * lam)`` and its resized spatial embedding
depend on the weights and on the feature-map size, not on the image. In
inference they can be reused from one forward to the next at the same size.
Reuse is hidden state, so it is kept to these rules:

* **Bounded.** Entries are kept least-recently-used first up to ``max_bytes``
  in all; an entry larger than the budget is never stored. Any sequence of
  input sizes therefore holds at most ``max_bytes``.
* **Never stale.** Each entry remembers the tensors it was computed from
  (weakly) with their ``_version``. PyTorch bumps a tensor's version on every
  in-place update (optimizer steps, ``load_state_dict``, ``param.add_()``);
  a lookup after such an update, or with other tensors (a replaced
  parameter, a model moved to another device), recomputes instead of
  returning the old value, and replaces it.
* **Safe to reuse in any later mode.** Values are computed outside
  ``torch.inference_mode`` and autograd, so a value cached during an
  inference pass can be saved for backward by a later training step. Values
  computed inside a ``TorchDispatchMode`` (fake or meta tensors, FLOP
  counters, tracers) are not stored: they may not be real tensors.

The owner decides when caching applies (e.g. not while training, nor while a
graph is traced); this class only stores.
"""
import threading
import weakref
from collections import OrderedDict
from typing import Callable, Hashable, Iterable, Optional

import torch
from torch import Tensor

__all__ = ['ResolutionCache']


def _versions(tensors) -> tuple:
    return tuple(None if t is None else (weakref.ref(t), t._version) for t in tensors)


def _same_sources(saved: tuple, tensors: list) -> bool:
    return len(saved) == len(tensors) and all(
        (s is None and t is None) or (s is not None and t is not None and s[0]() is t
                                      and s[1] == t._version)
        for s, t in zip(saved, tensors))


class ResolutionCache:
    """Least-recently-used tensor cache bounded in bytes.

    Args:
        max_bytes (int): Budget for all entries together; 0 disables caching.
    """

    def __init__(self, max_bytes: int):
        self._entries: 'OrderedDict[Hashable, tuple]' = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0
        self.hits = self.misses = 0
        self.max_bytes = int(max_bytes)

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        if value < 0:
            raise ValueError(f'ResolutionCache: max_bytes must be >= 0, got {value}')
        self._max_bytes = int(value)
        with self._lock:
            self._evict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key) -> bool:
        return key in self._entries

    def get(self, key: Hashable, sources: Iterable[Optional[Tensor]],
            compute: Callable[[], Tensor]) -> Tensor:
        """The value for ``key`` computed from ``sources`` (cached or fresh).

        ``compute`` runs outside inference mode and without autograd; the
        result is stored if it fits the budget.
        """
        sources = list(sources)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                if _same_sources(entry[0], sources):
                    self._entries.move_to_end(key)
                    self.hits += 1
                    return entry[1]
                self._drop(key)  # computed from weights that have changed since
            self.misses += 1
        with torch.inference_mode(False), torch.no_grad():
            value = compute()
        if torch._C._len_torch_dispatch_stack() > 0:
            return value
        nbytes = value.untyped_storage().nbytes()
        if 0 < nbytes <= self._max_bytes:
            with self._lock:
                if key in self._entries:
                    self._drop(key)
                self._entries[key] = (_versions(sources), value, nbytes)
                self.nbytes += nbytes
                self._evict()
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.nbytes = 0

    def _drop(self, key) -> None:
        self.nbytes -= self._entries.pop(key)[2]

    def _evict(self) -> None:
        while self.nbytes > self._max_bytes and self._entries:
            self._drop(next(iter(self._entries)))

    def __repr__(self) -> str:
        return (f'{type(self).__name__}({len(self)} entries, {self.nbytes / 2**20:.1f} of '
                f'{self._max_bytes / 2**20:.1f} MiB, hits={self.hits}, misses={self.misses})')

    # deepcopy/pickle (e.g. a model copied for EMA or export) start empty:
    # cached values belong to the original's weights.
    def __getstate__(self):
        return dict(max_bytes=self._max_bytes)

    def __setstate__(self, state):
        self.__init__(state['max_bytes'])
