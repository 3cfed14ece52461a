"""Minimal compatibility fixes for the pinned OpenMMLab set on new Pythons.

mmrotate 1.0.0rc1 (the only official mmrotate 1.x) still does
``from collections import Sequence`` in one module; the ABC aliases in
``collections`` were removed in Python 3.10. Rather than editing
site-packages, we restore the aliases (pointing at ``collections.abc``)
when rsvheat_mm is imported. Nothing is overwritten: only missing names are
added, so the fix is a no-op on Python < 3.10.
"""
import collections
import collections.abc

# The names Python 3.9 still exported from ``collections`` with a warning.
_ABC_ALIASES = ('Awaitable', 'Coroutine', 'AsyncIterable', 'AsyncIterator',
                'AsyncGenerator', 'Hashable', 'Iterable', 'Iterator',
                'Generator', 'Reversible', 'Sized', 'Container', 'Callable',
                'Collection', 'Set', 'MutableSet', 'Mapping', 'MutableMapping',
                'MappingView', 'KeysView', 'ItemsView', 'ValuesView',
                'Sequence', 'MutableSequence', 'ByteString')


def patch_collections_abc_aliases():
    """Re-add ``collections.<ABC>`` aliases removed in Python 3.10."""
    for name in _ABC_ALIASES:
        if not hasattr(collections, name) and hasattr(collections.abc, name):
            setattr(collections, name, getattr(collections.abc, name))
