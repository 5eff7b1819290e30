"""One plugin manager per app, and what its plugins provide.

First-party plugins are registered as entry points like any third-party plugin; they are also
named here as strings so a bare checkout (no installed metadata) or ``load_entrypoints=False``
still gets them. ``gateway`` never imports ``plugins`` at module level.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from gateway import PROJECT_NAME, hookspecs
from gateway.actions import ImageAction
from gateway.catalog import ImageCatalogFactory
from gateway.server.versioning import SUPPORTED_VERSIONS, versions_in
from gateway.settings import ENV_PREFIX, Settings
from gateway.storage import StorageTargetFactory

#: Entry-point name -> module of the first-party plugins (same names as in pyproject.toml).
DEFAULT_PLUGINS: dict[str, str] = {
    "export": "plugins.actions.export",
    "update": "plugins.actions.update",
    "clone": "plugins.actions.clone",
    "manta": "plugins.storage.manta",
    "s3": "plugins.storage.s3",
    "embedded-catalog": "plugins.catalog.embedded",
    "objectstore-catalog": "plugins.catalog.objectstore",
}

DISABLED_ENV = ENV_PREFIX + "DISABLED_PLUGINS"


class PluginError(RuntimeError):
    """A plugin cannot be loaded or conflicts with another one; the start must stop."""


class ConfigurationError(RuntimeError):
    """A ``[catalog]`` or ``[storage]`` section names no known kind or is refused by its plugin."""


def create_component(
    section: str, config: Mapping[str, Any], factories: Mapping[str, Any], settings: Settings
) -> Any:
    """Build what ``config["kind"]`` selects among ``factories`` (catalogs or storage targets).

    The one place that turns a settings section into a plugin object, for the app and the CLI,
    and so the one that says which section a plugin's ``ValueError`` is about.
    """
    kind = config.get("kind")
    factory = factories.get(str(kind))
    if factory is None:
        known = ", ".join(sorted(factories)) or "none (is a plugin providing one disabled?)"
        raise ConfigurationError(f"{section}.kind = {kind!r} is unknown; known kinds: {known}")
    options = {k: v for k, v in config.items() if k != "kind"}
    try:
        return factory.create(options, settings)
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigurationError(f"[{section}] kind={kind}: {exc}") from exc


def disabled_plugin_names(settings: Settings, env: Mapping[str, str] | None = None) -> set[str]:
    """Names from the settings plus the comma-separated ``CLOUDAPI_GATEWAY_DISABLED_PLUGINS``."""
    env = os.environ if env is None else env
    names = set(settings.disabled_plugins)
    names.update(n.strip() for n in env.get(DISABLED_ENV, "").split(",") if n.strip())
    return names


@functools.lru_cache(maxsize=1)
def installed_entry_points() -> tuple[EntryPoint, ...]:
    """The ``cloudapi_gateway`` entry points, scanned once per process (the scan is slow).

    Call ``installed_entry_points.cache_clear()`` after installing a plugin in-process.
    """
    return tuple(entry_points(group=PROJECT_NAME))


def _load_entrypoints(pm: pluggy.PluginManager, disabled: set[str]) -> None:
    """``load_setuptools_entrypoints`` with a cached scan; also blocks by module name."""
    for ep in installed_entry_points():
        if pm.is_blocked(ep.name) or ep.value.split(":")[0] in disabled:
            continue
        if pm.get_plugin(ep.name) is not None:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginError(
                f"cannot load entry-point plugin {ep.name} ({ep.value}): {exc}"
            ) from exc
        if not pm.is_registered(plugin):
            pm.register(plugin, name=ep.name)


def build_plugin_manager(
    settings: Settings,
    *,
    extra: Iterable[object] = (),
    env: Mapping[str, str] | None = None,
) -> pluggy.PluginManager:
    """add_hookspecs -> set_blocked -> entry points -> defaults -> extras -> check_pending."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    disabled = disabled_plugin_names(settings, env)
    module_to_name = {module: name for name, module in DEFAULT_PLUGINS.items()}
    for name in disabled:
        pm.set_blocked(name)
        if name in module_to_name:
            pm.set_blocked(module_to_name[name])
        if name in DEFAULT_PLUGINS:
            pm.set_blocked(DEFAULT_PLUGINS[name])
    if settings.load_entrypoints:
        _load_entrypoints(pm, disabled)
    for name, module_name in DEFAULT_PLUGINS.items():
        if pm.is_blocked(name) or pm.get_plugin(name) is not None:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise PluginError(f"cannot import default plugin {module_name}: {exc}") from exc
        if not pm.is_registered(module):
            pm.register(module, name=name)
    for plugin in extra:
        pm.register(plugin, name=_readable_name(pm, plugin))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r}: {exc}") from exc
    _refuse_wrappers(pm)
    return pm


def _refuse_wrappers(pm: pluggy.PluginManager) -> None:
    """Stop the start on a hook wrapper: each plugin's list is collected on its own.

    The gateway calls every implementation by itself so that each item keeps the name of the
    plugin that provided it (conflict messages and ``cloudapi-gateway plugins`` need it); a
    wrapper would never be called, so it is refused rather than silently skipped.
    """
    for plugin in pm.get_plugins():
        for caller in pm.get_hookcallers(plugin) or []:
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and (impl.wrapper or impl.hookwrapper):
                    raise PluginError(
                        f"plugin {impl.plugin_name}: {caller.name} is a hook wrapper "
                        "(wrapper=True or hookwrapper=True); the gateway's hooks take no wrappers: "
                        "return the items themselves"
                    )


def _readable_name(pm: pluggy.PluginManager, plugin: object) -> str:
    """Module name for modules, class name for objects: error messages can then name them."""
    base = getattr(plugin, "__name__", None) or type(plugin).__qualname__
    name, n = base, 1
    while pm.get_plugin(name) is not None or pm.is_blocked(name):
        n += 1
        name = f"{base}#{n}"
    return name


@dataclass
class Provided:
    """What the loaded plugins provide, each item with the name of the plugin it came from."""

    actions: dict[str, ImageAction] = field(default_factory=dict)
    storage_targets: dict[str, StorageTargetFactory] = field(default_factory=dict)
    image_catalogs: dict[str, ImageCatalogFactory] = field(default_factory=dict)
    #: (hook short name, item name) -> plugin name
    owners: dict[tuple[str, str], str] = field(default_factory=dict)

    def by_plugin(self) -> dict[str, dict[str, list[str]]]:
        """plugin name -> {"actions": [...], "storage": [...], "catalogs": [...]} (for the CLI)."""
        out: dict[str, dict[str, list[str]]] = {}
        for (kind, item), plugin in self.owners.items():
            out.setdefault(plugin, {}).setdefault(kind, []).append(item)
        return out


class Hooks:
    """Typed facade over ``pm.hook``: call sites are type-checked and see who provided what."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm

    def _per_plugin(self, caller: pluggy.HookCaller) -> list[tuple[str, Any]]:
        """Call each implementation on its own so every result keeps its plugin's name."""
        results = []
        for impl in caller.get_hookimpls():  # roughly registration order; no wrappers (refused)
            value = impl.function()
            if value is not None:
                results.append((impl.plugin_name, value))
        return results

    def gateway_register_image_actions(self) -> list[tuple[str, ImageAction]]:
        return self._flatten(self.pm.hook.gateway_register_image_actions)

    def gateway_register_storage_targets(self) -> list[tuple[str, StorageTargetFactory]]:
        return self._flatten(self.pm.hook.gateway_register_storage_targets)

    def gateway_register_image_catalogs(self) -> list[tuple[str, ImageCatalogFactory]]:
        return self._flatten(self.pm.hook.gateway_register_image_catalogs)

    def _flatten(self, caller: pluggy.HookCaller) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        for plugin, items in self._per_plugin(caller):
            if not isinstance(items, list | tuple):
                raise PluginError(
                    f"plugin {plugin}: {caller.name} must return a list, got {type(items).__name__}"
                )
            out.extend((plugin, item) for item in items)
        return out

    def provided(self) -> Provided:
        """Collect actions, storage kinds and catalog kinds; duplicates and junk stop the start."""
        result = Provided()
        _collect(
            "actions",
            self.gateway_register_image_actions(),
            result.actions,
            result.owners,
            _check_action,
        )
        _collect(
            "storage",
            self.gateway_register_storage_targets(),
            result.storage_targets,
            result.owners,
            _check_factory,
        )
        _collect(
            "catalogs",
            self.gateway_register_image_catalogs(),
            result.image_catalogs,
            result.owners,
            _check_factory,
        )
        return result


def _check_action(plugin: str, action: object) -> str | None:
    name = getattr(action, "name", None)
    if not isinstance(name, str) or not name:
        return f"plugin {plugin}: image action {action!r} has no string 'name'"
    if not isinstance(getattr(action, "schema", None), Mapping):
        return f"plugin {plugin}: image action {name!r} has no 'schema' mapping"
    if not inspect.iscoroutinefunction(getattr(action, "run", None)):
        return f"plugin {plugin}: image action {name!r} needs an 'async def run(ctx, params)'"
    served = getattr(action, "api_versions", "*")
    try:
        admitted = versions_in(served) if isinstance(served, str) else ()
    except ValueError:
        admitted = ()
    if not admitted:
        return (
            f"plugin {plugin}: image action {name!r} has api_versions {served!r}, which is not "
            f"a version range admitting any of {', '.join(SUPPORTED_VERSIONS)}"
        )
    return None


def _check_factory(plugin: str, factory: object) -> str | None:
    name = getattr(factory, "name", None)
    if not isinstance(name, str) or not name:
        return f"plugin {plugin}: factory {factory!r} has no string 'name'"
    if not callable(getattr(factory, "create", None)):
        return f"plugin {plugin}: factory {name!r} has no 'create(config, settings)'"
    return None


def _collect(
    kind: str,
    items: list[tuple[str, Any]],
    into: dict[str, Any],
    owners: dict[tuple[str, str], str],
    check: Callable[[str, object], str | None],
) -> None:
    label = {"actions": "image action", "storage": "storage kind", "catalogs": "catalog kind"}[kind]
    for plugin, item in items:
        problem = check(plugin, item)
        if problem:
            raise PluginError(problem)
        name = item.name
        if name in into:
            first = owners[(kind, name)]
            raise PluginError(
                f"{label} {name!r} is provided by two plugins: {first} and {plugin}; "
                f"disable one (disabled_plugins or {DISABLED_ENV})"
            )
        into[name] = item
        owners[(kind, name)] = plugin


def describe_plugins(pm: pluggy.PluginManager) -> list[dict[str, Any]]:
    """Every registered plugin with its module/distribution and what it provides (for the CLI)."""
    everything = Hooks(pm).provided()
    provided = everything.by_plugin()
    dists = {ep.name: ep.dist for ep in installed_entry_points()}
    rows = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        dist = dists.get(name)
        module = getattr(plugin, "__name__", type(plugin).__module__)
        rows.append(
            {
                "name": name,
                "module": module,
                "distribution": f"{dist.name} {dist.version}" if dist else None,
                "hooks": sorted(h.name for h in pm.get_hookcallers(plugin) or []),
                "provides": provided.get(name, {}),
                #: The API versions each of its actions serves (a node-semver range).
                "api_versions": {
                    action: getattr(everything.actions[action], "api_versions", "*")
                    for action in provided.get(name, {}).get("actions", [])
                },
            }
        )
    return rows
