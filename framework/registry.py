"""The plugin manager and the registry of named components it feeds.

Start-up: add the hook specifications, register the built-in plugin modules, load the
``plugnet`` entry points of installed distributions.  Modules named by ``--plugin`` or a
config's ``plugins`` are added with `load_plugins`.  The registry is then built by calling
every registration hook, one plugin at a time, so a clash or a failure names its plugin.
"""

import importlib
import importlib.metadata
import inspect
import sys
from collections.abc import Mapping

import attrs
import pluggy

from framework import hookspecs
from framework.errors import ConfigError, PluginError, PlugnetError, did_you_mean

PROJECT = "plugnet"
KINDS = tuple(hookspecs.REGISTRATION_HOOKS)
SINGULAR = {
    "layers": "layer",
    "activations": "activation",
    "losses": "loss",
    "optimizers": "optimizer",
    "initializers": "initializer",
    "metrics": "metric",
    "datasets": "dataset",
    "callbacks": "callback",
}

# The one place the framework names the built-in plugins.
BUILTIN_PLUGINS = (
    "plugins.layers",
    "plugins.activations",
    "plugins.losses",
    "plugins.optimizers",
    "plugins.initializers",
    "plugins.metrics",
    "plugins.datasets",
    "plugins.callbacks",
)

_manager = None
_registry = None
_distributions = {}  # entry-point plugin name -> the distribution that provides it


def plugin_manager():
    """The process-wide plugin manager, created on first use."""
    global _manager
    if _manager is None:
        pm = pluggy.PluginManager(PROJECT)
        pm.add_hookspecs(hookspecs)
        for module_name in BUILTIN_PLUGINS:
            pm.register(importlib.import_module(module_name), name=module_name)
        load_entry_points(pm)
        _manager = pm
    return _manager


def load_entry_points(pm):
    """Register the ``plugnet`` entry points of the installed distributions, as pluggy's
    ``load_setuptools_entrypoints`` does, but one that fails names itself and its
    distribution (pluggy's would end in the bare exception)."""
    for entry_point in importlib.metadata.entry_points(group=PROJECT):
        if pm.get_plugin(entry_point.name) is not None or pm.is_blocked(entry_point.name):
            continue
        dist = entry_point.dist
        try:
            pm.register(entry_point.load(), name=entry_point.name)
        except Exception as exc:  # a broken third-party distribution: anything may come out
            where = f" of the distribution {dist.name} {dist.version}" if dist is not None else ""
            raise PluginError(
                f"the '{PROJECT}' entry point '{entry_point.name}' ({entry_point.value}){where} "
                f"failed to load: {error_text(exc)}"
            ) from exc
        _distributions[entry_point.name] = dist


def error_text(exc):
    """An exception as one line: an import's own message, otherwise the exception's type and
    message (``RuntimeError: ...``, ``SyntaxError: invalid syntax (x.py, line 3)``)."""
    if isinstance(exc, ImportError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def load_plugins(module_names):
    """Import and register plugin modules by name (``--plugin`` / config ``plugins``); a
    module that raises anything while it is imported is a `PluginError` naming it."""
    global _registry
    pm = plugin_manager()
    for module_name in module_names:
        if pm.has_plugin(module_name):
            continue
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # a plugin's module may raise anything: its own bug, not ours
            raise PluginError(
                f"cannot import plugin module '{module_name}': {error_text(exc)}"
            ) from exc
        if pm.is_registered(module):
            continue
        pm.register(module, name=module_name)
        _registry = None


def plugin_loaded(module_name):
    """Whether the plugin module ``module_name`` is registered already (built-in, installed
    entry point, or loaded by `load_plugins`), so that naming it imports nothing."""
    pm = plugin_manager()
    if pm.has_plugin(module_name):
        return True
    module = sys.modules.get(module_name)
    return module is not None and pm.is_registered(module)


def plugin_origin(plugin):
    """Where a plugin comes from: 'built-in', 'distribution NAME VERSION' or 'module'."""
    pm = plugin_manager()
    name = pm.get_name(plugin)
    if name in BUILTIN_PLUGINS:
        return "built-in"
    dist = _distributions.get(name)
    if dist is not None:
        return f"distribution {dist.name} {dist.version}"
    return "module"


@attrs.frozen
class Entry:
    """One registered component: its factory and the plugin that registered it."""

    factory: object
    plugin: str


class Registry:
    """Every registered component, by kind and name."""

    def __init__(self, pm):
        self._entries = {kind: {} for kind in KINDS}
        self._by_plugin = {}
        for kind, hook_name in hookspecs.REGISTRATION_HOOKS.items():
            for impl in getattr(pm.hook, hook_name).get_hookimpls():
                plugin = impl.plugin_name
                try:
                    mapping = impl.function()
                except Exception as exc:
                    raise PluginError(
                        f"plugin '{plugin}' failed in {hook_name}(): {type(exc).__name__}: {exc}"
                    ) from exc
                if mapping is None:
                    continue
                if not isinstance(mapping, Mapping):
                    raise PluginError(
                        f"plugin '{plugin}': {hook_name}() must return a mapping of name to "
                        f"factory, got {type(mapping).__name__}"
                    )
                for name, factory in mapping.items():
                    known = self._entries[kind].get(name)
                    if known is not None:
                        raise PluginError(
                            f"{SINGULAR[kind]} '{name}' is registered by two plugins: "
                            f"'{known.plugin}' and '{plugin}'"
                        )
                    self._entries[kind][name] = Entry(factory, plugin)
                    self._by_plugin.setdefault(plugin, {}).setdefault(kind, []).append(name)

    def names(self, kind):
        return sorted(self._check_kind(kind))

    def entry(self, kind, name):
        entries = self._check_kind(kind)
        if not isinstance(name, str):  # e.g. `type = []` in a config
            article = "an" if SINGULAR[kind][0] in "aeiou" else "a"
            raise ConfigError(f"{article} {SINGULAR[kind]} is named by a string, got {name!r}")
        if name not in entries:
            raise ConfigError(unknown_name_message(SINGULAR[kind], name, entries, kind))
        return entries[name]

    def by_plugin(self):
        """``{plugin name: {kind: [names]}}`` in registration order."""
        return self._by_plugin

    def create(self, kind, name, /, **params):
        factory = self.entry(kind, name).factory
        # Every layer may be named (a model's layers read each other by name).
        layer_name = params.pop("name", None) if kind == "layers" else None
        if layer_name is not None and (not isinstance(layer_name, str) or not layer_name):
            raise ConfigError(
                f"layer '{name}': name must be a non-empty string, got {layer_name!r}"
            )
        check_parameters(factory, params, f"{SINGULAR[kind]} '{name}'")
        try:
            component = factory(**params)
        except (TypeError, ValueError) as exc:
            # attrs validators raise with (message, attribute, ...) as args: keep the message.
            reason = exc.args[0] if exc.args and isinstance(exc.args[0], str) else exc
            raise ConfigError(f"{SINGULAR[kind]} '{name}': {reason}") from exc
        if getattr(component, "kind", None) is None:
            try:
                component.kind = name
            except AttributeError:  # a slotted third-party object; the name is cosmetic
                pass
        if layer_name is not None:
            component.name, component.named = layer_name, True
        return component

    def resolve(self, kind, spec):
        """A component from a name, a ``{"type": name, ...}`` mapping, a class or an instance."""
        if isinstance(spec, str):
            return self.create(kind, spec)
        if isinstance(spec, Mapping):
            params = dict(spec)
            name = params.pop("type", None)
            if name is None:
                raise ConfigError(
                    f"a {SINGULAR[kind]} given as a table needs a 'type' key naming one of: "
                    f"{', '.join(self.names(kind))}"
                )
            return self.create(kind, name, **params)
        if isinstance(spec, type):
            return spec()
        if spec is None:
            raise ConfigError(f"no {SINGULAR[kind]} given")
        if isinstance(spec, (bool, int, float, list, tuple)):  # config data that names nothing
            raise ConfigError(
                f"a {SINGULAR[kind]} must be a name or a table with a 'type', got {spec!r}"
            )
        return spec

    def _check_kind(self, kind):
        if kind not in self._entries:
            raise ConfigError(unknown_name_message("component kind", kind, self._entries))
        return self._entries[kind]


def unknown_name_message(what, name, known, plural=None):
    """``unknown layer 'dens'; did you mean 'dense'? Known layers: ...``"""
    message = f"unknown {what} '{name}'" + did_you_mean(name, known)
    label = f"Known {plural}" if plural else "Known"
    return f"{message} {label}: {', '.join(sorted(map(str, known)))}"


def parameter_names(factory):
    """The keyword parameters a factory takes, or None when it takes any (``**kwargs``)."""
    if isinstance(factory, type) and attrs.has(factory):
        return [f.alias or f.name for f in attrs.fields(factory) if f.init]
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    names = []
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            names.append(parameter.name)
    return names


def check_parameters(factory, params, what):
    accepted = parameter_names(factory)
    if accepted is None:
        return
    for key in params:
        if key not in accepted:
            message = f"{what} has no parameter '{key}'" + did_you_mean(key, accepted)
            listed = ", ".join(accepted) if accepted else "none"
            raise ConfigError(f"{message} Its parameters: {listed}")


def component(kind):
    """An attrs validator for a parameter that names a ``kind`` component (a registered name,
    a ``{"type": ...}`` mapping or an object), such as a layer's ``weight_init``: a wrong one
    is reported when the owner is made, naming the owner and the parameter, not when first
    used."""

    def check(instance, attribute, value):
        try:
            resolve(kind, value)
        except PlugnetError as exc:
            raise ValueError(f"{attribute.name}: {exc}") from None

    return check


def registry():
    """The registry of every loaded plugin, rebuilt after `load_plugins`."""
    global _registry
    if _registry is None:
        _registry = Registry(plugin_manager())
    return _registry


def create(kind, name, /, **params):
    """Make the component registered as ``name`` of ``kind`` (``"layers"``, ``"losses"``...)."""
    return registry().create(kind, name, **params)


def resolve(kind, spec):
    """Make a component from a name, a ``{"type": ...}`` mapping, a class or an instance."""
    return registry().resolve(kind, spec)
