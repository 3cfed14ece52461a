"""Every process-wide change that ``import rsvheat_mm`` makes, in one place.

A plugin should leave the process as it found it. rsvheat_mm makes a few
exceptions, each for a gain users asked for, each applied only when it is
needed, through public APIs where they exist, and each possible to switch
off. They are listed in :data:`PATCHES` (and in the README, "Compatibility
fixes"); ``print(rsvheat_mm.runtime_compat.report())`` shows what was
applied in the current environment and why.

=======================  ===================================================
name                     what changes, and when
=======================  ===================================================
``root_registry``        rsvheat_mm's classes are also registered (public
                         ``Registry.register_module``) in mmengine's root
                         registries, so a bare ``type='RSVHeat'`` resolves
                         under every toolbox scope. Always.
``toolbox_import_hook``  a ``sys.meta_path`` finder registers rsvheat_mm's
                         mmpretrain/mmseg/mmdet/mmrotate components right
                         after that toolbox is imported (and runs
                         ``collections_alias`` just before mmrotate). Only
                         while an installed toolbox is not yet imported; it
                         removes itself afterwards.
``collections_alias``    adds to ``collections`` the ``collections.abc``
                         aliases Python 3.10 removed, only the names the
                         installed mmrotate uses, when mmrotate is imported.
                         Only on Python >= 3.10 with an mmrotate that needs
                         them (official 1.0.0rc1; OneDL's does not).
``safe_checkpoint``      mmengine's loader for local checkpoint paths becomes
                         :func:`rsvheat_mm.utils.load_checkpoint_safely`
                         (public ``CheckpointLoader.register_scheme``). Only
                         on torch >= 2.6.
``atomic_writes``        mmengine's ``local`` file backend writes through a
                         temporary file and a rename (public
                         ``register_backend``). Always, unless another
                         package already replaced that backend.
``config_package_names`` mmengine's module -> distribution table
                         (``MODULE2PACKAGE``) names the forks that actually
                         provide ``mmseg``/``mmdet``/... (e.g.
                         ``onedl-mmsegmentation``), so ``mmseg::`` config
                         bases resolve. Only when a fork is installed.
``pkg_resources_warning`` silences setuptools' "pkg_resources is deprecated"
                         warning, only when mmengine's own ``package_utils``
                         triggers it (official mmengine re-imports
                         pkg_resources on every ``mmseg::`` base). Only when
                         that mmengine and a warning setuptools are present.
=======================  ===================================================

Switches (read when rsvheat_mm is imported):

* ``RSVHEAT_COMPAT=none`` -- apply none of them;
* ``RSVHEAT_DISABLE_PATCHES=atomic_writes,collections_alias`` -- apply all
  but the listed ones;
* Python: :func:`undo` reverts an applied patch (all but ``root_registry``,
  which mmengine gives no public way to unregister), :func:`apply` applies
  one later, :func:`status` reports.

With a patch off, the gain it brings is lost, nothing else: e.g. without
``root_registry`` only ``type='rsvheat_mm.RSVHeat'`` resolves; without
``toolbox_import_hook`` ``import rsvheat_mm`` imports every installed
toolbox at once to register its components.
"""
import collections
import collections.abc
import importlib
import importlib.abc
import importlib.metadata
import importlib.util
import os
import os.path as osp
import re
import sys
import threading
import warnings
from typing import Callable, Dict, List, Optional

__all__ = [
    'Patch', 'PATCHES', 'apply', 'undo', 'status', 'is_applied', 'is_enabled',
    'disabled_by_environment', 'before_toolbox_import', 'report'
]

ENV_COMPAT = 'RSVHEAT_COMPAT'
ENV_DISABLE = 'RSVHEAT_DISABLE_PATCHES'

# The toolboxes rsvheat_mm registers components for (utils/plugins.py).
TOOLBOXES = ('mmpretrain', 'mmseg', 'mmdet', 'mmrotate')


class Patch:
    """One process-wide change: why, when it is needed, how to apply/undo.

    Args:
        name (str): Name used by the switches.
        reason (str): What users gain and what changes in the process.
        needed (callable): Returns ``None`` when the patch is needed here,
            else a short reason why not (shown by :func:`status`).
        apply (callable): Applies it; may return a string saying it was
            skipped (e.g. someone else already changed the same thing).
        undo (callable, optional): Reverts it; ``None`` if it cannot be.
        deferred (callable, optional): Returns a description of the moment
            the patch will be applied if it must wait for one (e.g. mmrotate
            being imported), else ``None``.
    """

    def __init__(self, name: str, reason: str, needed: Callable[[], Optional[str]],
                 apply: Callable[[], Optional[str]], undo: Optional[Callable[[], None]] = None,
                 deferred: Optional[Callable[[], Optional[str]]] = None):
        self.name = name
        self.reason = reason
        self.needed = needed
        self._apply = apply
        self._undo = undo
        self.deferred = deferred
        self.state = 'not applied'

    @property
    def undoable(self) -> bool:
        return self._undo is not None

    def __repr__(self):
        return f'Patch({self.name!r}, state={self.state!r})'


PATCHES: Dict[str, Patch] = {}
_lock = threading.RLock()
_api_disabled = set()


def _register(patch: Patch) -> Patch:
    PATCHES[patch.name] = patch
    return patch


def disabled_by_environment() -> List[str]:
    """Names switched off by ``RSVHEAT_COMPAT``/``RSVHEAT_DISABLE_PATCHES``."""
    compat = os.environ.get(ENV_COMPAT, 'all').strip().lower()
    if compat in ('none', 'off', '0', 'false'):
        return list(PATCHES)
    if compat not in ('', 'all', 'on', '1', 'true'):
        warnings.warn(f'rsvheat_mm: {ENV_COMPAT}={compat!r} is not understood; use "none" '
                      f'or "all". Applying all patches.')
    names = [n.strip() for n in os.environ.get(ENV_DISABLE, '').split(',') if n.strip()]
    unknown = [n for n in names if n not in PATCHES]
    if unknown:
        warnings.warn(f'rsvheat_mm: {ENV_DISABLE} names unknown patches {unknown}; '
                      f'the patches are {list(PATCHES)}')
    return [n for n in names if n in PATCHES]


def is_enabled(name: str) -> bool:
    """Whether the switches allow patch ``name``."""
    _check_name(name)
    return name not in _api_disabled and name not in disabled_by_environment()


def is_applied(name: str) -> bool:
    _check_name(name)
    return PATCHES[name].state == 'applied'


def _check_name(name):
    if name not in PATCHES:
        raise KeyError(f'no rsvheat_mm runtime patch {name!r}; the patches are {list(PATCHES)}')


def apply(names: Optional[List[str]] = None) -> Dict[str, str]:
    """Apply the enabled, needed patches (all by default). Idempotent.

    Called by ``import rsvheat_mm``. Naming a patch that the environment or
    :func:`undo` switched off applies it anyway (an explicit request).

    Returns:
        dict: :func:`status` afterwards.
    """
    explicit = names is not None
    for name in (names if explicit else list(PATCHES)):
        _check_name(name)
        patch = PATCHES[name]
        with _lock:
            if patch.state == 'applied':
                continue
            if explicit:
                _api_disabled.discard(name)
            elif not is_enabled(name):
                patch.state = 'disabled'
                continue
            why_not = patch.needed()
            if why_not:
                patch.state = f'not needed: {why_not}'
                continue
            waiting = patch.deferred() if patch.deferred else None
            if waiting:
                patch.state = f'pending: {waiting}'
                continue
            skipped = patch._apply()
            patch.state = f'skipped: {skipped}' if skipped else 'applied'
    return status()


def undo(name: str) -> None:
    """Revert patch ``name`` and keep it off for the rest of the process."""
    _check_name(name)
    patch = PATCHES[name]
    if not patch.undoable:
        raise RuntimeError(
            f'rsvheat_mm runtime patch {name!r} cannot be undone once applied; '
            f'set {ENV_DISABLE}={name} before importing rsvheat_mm')
    with _lock:
        _api_disabled.add(name)
        if patch.state == 'applied':
            patch._undo()
        patch.state = 'disabled'


def status() -> Dict[str, str]:
    """Patch name -> 'applied', 'disabled', 'pending: ...', 'not needed: ...'."""
    return {name: patch.state for name, patch in PATCHES.items()}


def _apply_if_pending(name):
    """Apply a deferred patch now that its moment has come."""
    patch = PATCHES[name]
    with _lock:
        if patch.state.startswith('pending') or (patch.state == 'not applied'
                                                 and is_enabled(name)):
            why_not = patch.needed()
            if why_not:
                patch.state = f'not needed: {why_not}'
            else:
                skipped = patch._apply()
                patch.state = f'skipped: {skipped}' if skipped else 'applied'


def _spec(module):
    """``find_spec`` for a top-level name without importing it; None if absent."""
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None


def _imported(module):
    # ``sys.modules[name] = None`` blocks an import: not imported, not importable.
    return sys.modules.get(module) is not None


# -- root_registry ---------------------------------------------------------------------
def _mirror_to_root(registry, module, names) -> None:
    """Register ``module`` under ``names`` in ``registry``'s root parent."""
    parent = registry.parent
    if parent is None:
        return
    for name in names:
        current = parent.module_dict.get(name)
        if current is module:
            continue
        ours = getattr(current, '__module__', '').split('.')[0] == 'rsvheat_mm'
        if current is not None and not ours:
            warnings.warn(
                f'rsvheat_mm: {name!r} is already registered in mmengine\'s root '
                f'{parent.name!r} registry by {current.__module__}; use '
                f'type="rsvheat_mm.{name}" for rsvheat_mm\'s.')
            continue
        # `ours`: a re-registration (reloaded module) replaces our old class.
        parent.register_module(name=name, module=module, force=ours)


def registered(registry, module, name) -> None:
    """Called by :class:`rsvheat_mm.registry.PluginRegistry` per registration."""
    if PATCHES['root_registry'].state == 'applied':
        names = [name] if isinstance(name, str) else list(name or [module.__name__])
        _mirror_to_root(registry, module, names)


def _apply_root_registry():
    from rsvheat_mm import registry as reg
    PATCHES['root_registry'].state = 'applied'  # later registrations mirror too
    for child in reg.CHILD_REGISTRIES:
        for name, module in list(child.module_dict.items()):
            _mirror_to_root(child, module, [name])


_register(Patch(
    'root_registry',
    'Bare type names (type="RSVHeat") in every toolbox scope: each rsvheat_mm class is '
    'also registered, through the public Registry.register_module, in mmengine\'s root '
    'registry of its kind, which every toolbox registry falls back to. Off: only '
    'type="rsvheat_mm.RSVHeat" resolves.',
    needed=lambda: None, apply=_apply_root_registry, undo=None))


# -- toolbox_import_hook / collections_alias -------------------------------------------
_prepared = set()


def before_toolbox_import(toolbox: str) -> None:
    """What must happen before ``toolbox`` executes (mmrotate: the alias)."""
    if toolbox in _prepared:
        return
    _prepared.add(toolbox)
    if toolbox == 'mmrotate':
        _apply_if_pending('collections_alias')


class _ToolboxImportHook(importlib.abc.MetaPathFinder):
    """Wraps a toolbox's loader: prepare, execute, then register components."""

    def __init__(self):
        self.pending = set()

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.pending:
            return None
        # Ask the remaining finders for the real spec.
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, 'exec_module'):
            return spec
        # A probe (importlib.util.find_spec) gets the wrapped loader too, but
        # nothing happens until the module is executed.
        exec_module = loader.exec_module

        def exec_and_register(module, _exec=exec_module, _name=fullname):
            before_toolbox_import(_name)
            _exec(module)
            self._done(_name)
            # The toolbox package is complete here; importing our modules
            # (which import its submodules) cannot see it half-initialised.
            sys.modules[_name] = module
            from rsvheat_mm.utils.plugins import register_toolbox_components
            register_toolbox_components(_name)

        loader.exec_module = exec_and_register
        return spec

    def _done(self, toolbox):
        self.pending.discard(toolbox)
        if not self.pending:
            _remove_hook()


_hook = _ToolboxImportHook()


def _remove_hook():
    with _lock:
        if _hook in sys.meta_path:
            sys.meta_path.remove(_hook)


def _pending_toolboxes():
    return {t for t in TOOLBOXES if not _imported(t) and _spec(t) is not None}


def _apply_import_hook():
    _hook.pending = _pending_toolboxes()
    if _hook.pending and _hook not in sys.meta_path:
        sys.meta_path.insert(0, _hook)


def _import_hook_needed():
    return None if _pending_toolboxes() else 'every installed toolbox is already imported'


_register(Patch(
    'toolbox_import_hook',
    'import rsvheat_mm stays light (it imports no toolbox) yet the mmpretrain/mmseg/mmdet/'
    'mmrotate components are registered as soon as that toolbox is imported: a '
    'sys.meta_path finder wraps the toolbox\'s loader; it is present only while an '
    'installed toolbox is not yet imported. Off: import rsvheat_mm imports every '
    'installed toolbox at once.',
    needed=_import_hook_needed, apply=_apply_import_hook,
    undo=lambda: (_remove_hook(), _hook.pending.clear())))

# The names Python 3.9 still exported from ``collections`` with a warning.
_ABC_ALIASES = ('Awaitable', 'Coroutine', 'AsyncIterable', 'AsyncIterator',
                'AsyncGenerator', 'Hashable', 'Iterable', 'Iterator',
                'Generator', 'Reversible', 'Sized', 'Container', 'Callable',
                'Collection', 'Set', 'MutableSet', 'Mapping', 'MutableMapping',
                'MappingView', 'KeysView', 'ItemsView', 'ValuesView',
                'Sequence', 'MutableSequence', 'ByteString')
_FROM_COLLECTIONS = re.compile(
    r'^[ \t]*from[ \t]+collections[ \t]+import[ \t]+(?:\(([^)]*)\)|([^\n#]+))', re.M)
_ATTR_COLLECTIONS = re.compile(r'\bcollections\.(%s)\b' % '|'.join(_ABC_ALIASES))
_added_aliases: List[str] = []


def collections_names_used_by(package: str) -> List[str]:
    """Removed ``collections`` ABC aliases the source of ``package`` uses."""
    spec = _spec(package)
    origin = getattr(spec, 'origin', None)
    if not origin:
        return []
    used = set()
    for dirpath, dirnames, filenames in os.walk(osp.dirname(origin)):
        dirnames[:] = [d for d in dirnames if not d.startswith(('.', '__'))]
        for filename in filenames:
            if not filename.endswith('.py'):
                continue
            try:
                with open(osp.join(dirpath, filename), encoding='utf-8') as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError):
                continue
            if 'collections' not in text:
                continue
            for m in _FROM_COLLECTIONS.finditer(text):
                for item in (m.group(1) or m.group(2)).split(','):
                    used.add(item.split(' as ')[0].strip())
            used.update(_ATTR_COLLECTIONS.findall(text))
    return sorted(n for n in used if n in _ABC_ALIASES)


def _collections_needed():
    if sys.version_info < (3, 10):
        return 'Python < 3.10 still has the aliases'
    if _spec('mmrotate') is None:
        return 'mmrotate is not installed'
    if _imported('mmrotate') or 'mmrotate' in _prepared:
        missing = [n for n in collections_names_used_by('mmrotate')
                   if not hasattr(collections, n)]
        if not missing:
            return 'the installed mmrotate uses no removed collections alias'
    return None


def _collections_deferred():
    if _imported('mmrotate') or 'mmrotate' in _prepared:
        return None
    return 'applied when mmrotate is imported, if it needs the aliases'


def _apply_collections_alias():
    for name in collections_names_used_by('mmrotate'):
        if not hasattr(collections, name) and hasattr(collections.abc, name):
            setattr(collections, name, getattr(collections.abc, name))
            _added_aliases.append(name)


def _undo_collections_alias():
    while _added_aliases:
        name = _added_aliases.pop()
        if getattr(collections, name, None) is getattr(collections.abc, name):
            delattr(collections, name)


_register(Patch(
    'collections_alias',
    'mmrotate 1.0.0rc1 (the only official mmrotate 1.x) does `from collections import '
    'Sequence`; Python 3.10 removed those aliases. Just before mmrotate executes, the '
    'names its source uses are added to collections, pointing at collections.abc; '
    'nothing is overwritten. Not applied for an mmrotate that does not need them '
    '(OneDL\'s), on Python < 3.10, or before mmrotate is imported. Off: official mmrotate '
    'fails to import on Python >= 3.10.',
    needed=_collections_needed, apply=_apply_collections_alias,
    undo=_undo_collections_alias, deferred=_collections_deferred))


# -- safe_checkpoint ---------------------------------------------------------------------
def _torch_version():
    import torch
    from packaging.version import parse
    return parse(torch.__version__.split('+')[0])


def _safe_checkpoint_needed():
    from packaging.version import parse
    if _torch_version() < parse('2.6.0'):
        return 'torch < 2.6 does not unpickle weights-only by default'
    return None


def _load_from_local(filename, map_location):
    from rsvheat_mm.utils.checkpoint import load_checkpoint_safely
    return load_checkpoint_safely(osp.expanduser(filename), map_location=map_location)


def _apply_safe_checkpoint():
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', loader=_load_from_local, force=True)


def _undo_safe_checkpoint():
    from mmengine.runner.checkpoint import CheckpointLoader, load_from_local
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)


_register(Patch(
    'safe_checkpoint',
    'Weights-only checkpoint loading that works on torch >= 2.6: mmengine\'s loader for '
    'local paths (resume, load_from, init_cfg Pretrained, load_checkpoint) is replaced, '
    'through the public CheckpointLoader.register_scheme, by load_checkpoint_safely, '
    'which allow-lists exactly what mmengine writes and refuses anything else. Off: '
    'official mmengine 0.10.7 cannot resume on torch >= 2.6, and OneDL\'s mmengine falls '
    'back to full (code-executing) unpickling when the weights-only load fails.',
    needed=_safe_checkpoint_needed, apply=_apply_safe_checkpoint,
    undo=_undo_safe_checkpoint))


# -- atomic_writes -------------------------------------------------------------------------
_replaced_backend = []


def _apply_atomic_writes():
    from mmengine.fileio.backends import LocalBackend, backends, register_backend

    from rsvheat_mm.utils.fileio import AtomicLocalBackend
    current = backends.get('local')
    if current is not LocalBackend and current is not AtomicLocalBackend:
        return (f"mmengine's local backend is already {current.__module__}."
                f'{current.__qualname__}; left alone')
    _replaced_backend[:] = [current]
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
    return None


def _undo_atomic_writes():
    from mmengine.fileio.backends import LocalBackend, register_backend
    original = _replaced_backend.pop() if _replaced_backend else LocalBackend
    register_backend('local', original, force=True, prefixes='')


_register(Patch(
    'atomic_writes',
    'No half-written checkpoints or result files: mmengine\'s "local" file backend '
    '(CheckpointHook, Runner.save_checkpoint, mmengine.dump) is replaced, through the '
    'public register_backend, by one whose put/put_text write a temporary file in the '
    'target directory, fsync it and rename it onto the target. Permissions are what '
    'open() would give: the umask for new files, the old mode for replaced ones. Off: a '
    'job killed while saving leaves a truncated file under the final name.',
    needed=lambda: None, apply=_apply_atomic_writes, undo=_undo_atomic_writes))


# -- config_package_names ------------------------------------------------------------------
_original_names: Dict[str, str] = {}


def _dist_installed(dist):
    try:
        importlib.metadata.version(dist)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def forked_package_names() -> Dict[str, str]:
    """module -> installed distribution, where mmengine's table names another.

    E.g. ``{'mmseg': 'onedl-mmsegmentation'}`` on the OneDL stack: mmengine
    looks up the distribution ``mmsegmentation`` for ``mmseg::`` bases.
    """
    from mmengine.config.utils import MODULE2PACKAGE
    fixes = {}
    providers = None
    for module, dist in MODULE2PACKAGE.items():
        if _original_names.get(module, dist) != dist:
            continue  # ours: already fixed
        if _spec(module) is None or _dist_installed(dist):
            continue
        if providers is None:  # Python >= 3.10
            lookup = getattr(importlib.metadata, 'packages_distributions', dict)
            providers = lookup()
        candidates = [d for d in providers.get(module, ()) if d != dist]
        fixes[module] = candidates[0] if candidates else module
    return fixes


def _config_names_needed():
    return None if forked_package_names() else \
        'every toolbox is installed under the distribution name mmengine expects'


def _apply_config_names():
    from mmengine.config.utils import MODULE2PACKAGE
    from mmengine.utils import get_installed_path
    for module, dist in forked_package_names().items():
        spec = _spec(module)
        module_dir = osp.dirname(spec.origin) if getattr(spec, 'origin', None) else None
        try:
            resolves = osp.realpath(get_installed_path(dist)) == osp.realpath(module_dir)
        except Exception:
            resolves = False
        # The import name always resolves (mmengine falls back to find_spec);
        # the distribution name also gives correct "pip install" messages.
        _original_names.setdefault(module, MODULE2PACKAGE[module])
        MODULE2PACKAGE[module] = dist if resolves else module


def _undo_config_names():
    from mmengine.config.utils import MODULE2PACKAGE
    for module, dist in _original_names.items():
        MODULE2PACKAGE[module] = dist
    _original_names.clear()


_register(Patch(
    'config_package_names',
    'Configs that inherit mmseg::/mmdet::/mmrotate::/mmpretrain:: bases load on forked '
    'stacks (OneDL): mmengine finds a toolbox\'s configs through the distribution name '
    'in mmengine.config.utils.MODULE2PACKAGE (mmseg -> mmsegmentation), which a fork '
    'such as onedl-mmsegmentation does not have. Entries whose distribution is missing '
    'but whose module is installed are pointed at the distribution that provides it. '
    'Needs rsvheat_mm imported before the config is parsed (our tools do that). Off: '
    '"mmsegmentation is not installed" for every mmseg:: base on OneDL.',
    needed=_config_names_needed, apply=_apply_config_names, undo=_undo_config_names))


# -- pkg_resources_warning -----------------------------------------------------------------
_PKG_RESOURCES_MESSAGE = 'pkg_resources is deprecated'
_PKG_RESOURCES_MODULE = r'(mmengine\.utils\.package_utils|importlib)$'
_warning_filters = []


def _pkg_resources_needed():
    spec = _spec('mmengine')
    origin = getattr(spec, 'origin', None)
    path = osp.join(osp.dirname(origin), 'utils', 'package_utils.py') if origin else None
    try:
        with open(path, encoding='utf-8') as f:
            uses = 'import pkg_resources' in f.read()
    except (OSError, TypeError):
        uses = False
    if not uses:
        return "mmengine's package_utils does not import pkg_resources"
    if _spec('pkg_resources') is None:
        return 'pkg_resources is not installed'
    return None


def _apply_pkg_resources_warning():
    # Only this message, only attributed to mmengine's package_utils or to
    # importlib (its importlib.reload(pkg_resources) is attributed there).
    warnings.filterwarnings('ignore', message=_PKG_RESOURCES_MESSAGE, category=UserWarning,
                            module=_PKG_RESOURCES_MODULE)
    _warning_filters.append(warnings.filters[0])


def _undo_pkg_resources_warning():
    while _warning_filters:
        entry = _warning_filters.pop()
        if entry in warnings.filters:
            warnings.filters.remove(entry)
    mutated = getattr(warnings, '_filters_mutated', None)
    if mutated is not None:
        mutated()


_register(Patch(
    'pkg_resources_warning',
    'Quiet config loading: official mmengine 0.10.7 re-imports pkg_resources each time it '
    'resolves an mmseg::/mmdet:: base, and setuptools 67-80 warns "pkg_resources is '
    'deprecated" on every import. One warnings filter for exactly that message, '
    'attributed to mmengine.utils.package_utils (or importlib, which its reload goes '
    'through); other warnings are untouched. Off: the warning is shown.',
    needed=_pkg_resources_needed, apply=_apply_pkg_resources_warning,
    undo=_undo_pkg_resources_warning))


def report() -> str:
    """A table of the patches and their state, for logs and bug reports."""
    width = max(map(len, PATCHES))
    lines = [f'{name:<{width}}  {patch.state}' for name, patch in PATCHES.items()]
    lines.append(f'switches: {ENV_COMPAT}=none, {ENV_DISABLE}=name,name '
                 '(README, "Compatibility fixes")')
    return '\n'.join(lines)
