"""Giving host memory back to the operating system after large inference.

PyTorch allocates CPU tensors with the C library's ``malloc``. glibc serves
blocks below its (dynamic, at most 32 MiB) mmap threshold from the heap and
keeps freed heap pages resident for reuse, so after a forward on a large
image a process stays at the high-water mark of that forward's
stride-8..32 activations, and fragmentation makes the next forward's peak
stack on top of it. ``malloc_trim(0)`` hands the free pages back. It changes
no allocator setting: it is a one-off release like
``torch.cuda.empty_cache()``, done by :class:`RSVHeat` after eval-mode
forwards too large to reuse their decays (``release_memory``).
"""
import ctypes
import ctypes.util
import sys

__all__ = ['trim_host_memory']

_TRIM = None


def _malloc_trim():
    global _TRIM
    if _TRIM is None:
        _TRIM = False
        if sys.platform.startswith('linux'):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
                _TRIM = libc.malloc_trim  # glibc only (absent in musl)
                _TRIM.argtypes = [ctypes.c_size_t]
                _TRIM.restype = ctypes.c_int
            except (OSError, AttributeError):
                _TRIM = False
    return _TRIM or None


def trim_host_memory() -> bool:
    """Return free ``malloc`` heap pages to the OS; False where the C library
    has no ``malloc_trim`` (non-glibc, non-Linux)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
