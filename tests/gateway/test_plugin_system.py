"""The plugin manager: loading, blocking, conflicts, and one ``test_hook_<name>`` per hookspec."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any

import pytest

from gateway import hookimpl
from gateway.server.app import create_app
from gateway.server.appkeys import ACTIONS, CATALOG, PLUGIN_MANAGER, STORAGE
from gateway.server.plugin_manager import (
    DEFAULT_PLUGINS,
    ConfigurationError,
    Hooks,
    PluginError,
    build_plugin_manager,
)
from gateway.settings import Settings
from gateway.storage import ObjectInfo
from tests.support.helpers import EchoAction, EchoPlugin, import_image


class OtherEchoPlugin:
    @hookimpl
    def gateway_register_image_actions(self) -> list[Any]:
        return [EchoAction()]


class MemoryTarget:
    """A storage target that records its life cycle (only what the tests look at)."""

    public_url = "memory://"

    def __init__(self, config: Mapping[str, Any], settings: Settings) -> None:
        self.config = dict(config)
        self.settings = settings
        self.events: list[str] = []

    async def open(self) -> None:
        self.events.append("open")

    async def close(self) -> None:
        self.events.append("close")

    async def stat(self, path: str) -> ObjectInfo | None:
        return None


class MemoryTargetFactory:
    name = "memory-test"

    def create(self, config: Mapping[str, Any], settings: Settings) -> MemoryTarget:
        if "bucket" not in config:
            raise ValueError("memory-test: bucket is required")
        return MemoryTarget(config, settings)


class StoragePlugin:
    @hookimpl
    def gateway_register_storage_targets(self) -> list[Any]:
        return [MemoryTargetFactory()]


class RecordingCatalog:
    def __init__(self) -> None:
        self.events: list[str] = []

    async def open(self) -> None:
        self.events.append("open")

    async def close(self) -> None:
        self.events.append("close")

    async def list_images(self) -> list[Any]:
        return []

    async def get_image(self, uuid: str) -> None:
        return None

    async def delete_image(self, uuid: str) -> bool:
        return False

    async def import_image(self, manifest: Mapping[str, Any], body: AsyncIterator[bytes]) -> Any:
        raise NotImplementedError

    async def open_file(self, uuid: str, index: int = 0) -> AsyncIterator[bytes]:
        yield b""


class RecordingCatalogFactory:
    name = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], Settings]] = []

    def create(self, config: Mapping[str, Any], settings: Settings) -> RecordingCatalog:
        self.calls.append((dict(config), settings))
        return RecordingCatalog()


class CatalogPlugin:
    def __init__(self) -> None:
        self.factory = RecordingCatalogFactory()

    @hookimpl
    def gateway_register_image_catalogs(self) -> list[Any]:
        return [self.factory]


# --- one test per hook (tests/gateway/test_docs.py checks they exist) --------------------------


async def test_hook_gateway_register_image_actions(app_client: Any, caller_factory: Any) -> None:
    client = await app_client(plugins=(EchoPlugin(),))
    app = client.server.app
    assert isinstance(app[ACTIONS]["echo"], EchoAction)
    assert "export" in app[ACTIONS]  # the first-party plugin, loaded by name
    caller = await caller_factory(client, "alice")
    image = await import_image(app, caller.account, b"data")
    resp = await caller.request("POST", f"/my/images/{image.uuid}?action=echo&word=hook")
    assert resp.status == 200
    assert (await resp.json())["params"]["word"] == "hook"


async def test_hook_gateway_register_storage_targets(
    settings: Settings, aiohttp_client: Any, caller_factory: Any
) -> None:
    custom = replace(settings, storage={"kind": "memory-test", "bucket": "b1"})
    app = create_app(custom, plugins=(StoragePlugin(), EchoPlugin()))
    target = app[STORAGE]
    assert isinstance(target, MemoryTarget)
    assert target.config == {"bucket": "b1"}  # "kind" is the gateway's, not the plugin's
    assert target.settings is custom
    client = await aiohttp_client(app)
    assert target.events == ["open"]
    caller = await caller_factory(client, "alice")
    image = await import_image(app, caller.account, b"data")
    resp = await caller.request("POST", f"/my/images/{image.uuid}?action=echo&word=s")
    assert (await resp.json())["storage"] is True
    await client.close()
    assert target.events == ["open", "close"]


async def test_hook_gateway_register_image_catalogs(
    settings: Settings, aiohttp_client: Any
) -> None:
    plugin = CatalogPlugin()
    custom = replace(settings, catalog={"kind": "recording", "colour": "blue"})
    app = create_app(custom, plugins=(plugin,))
    assert plugin.factory.calls == [({"colour": "blue"}, custom)]
    catalog = app[CATALOG]
    assert isinstance(catalog, RecordingCatalog)
    client = await aiohttp_client(app)
    assert catalog.events == ["open"]
    await client.close()
    assert catalog.events == ["open", "close"]


# --- the manager --------------------------------------------------------------------------------


def test_one_manager_per_app(settings: Settings) -> None:
    first, second = create_app(settings), create_app(settings)
    assert first[PLUGIN_MANAGER] is not second[PLUGIN_MANAGER]


def test_first_party_plugins_load_without_entry_points(settings: Settings) -> None:
    pm = build_plugin_manager(replace(settings, load_entrypoints=False))
    names = {name for name, _ in pm.list_name_plugin()}
    assert set(DEFAULT_PLUGINS) <= names


def test_duplicate_action_names_both_plugins(settings: Settings) -> None:
    with pytest.raises(PluginError) as info:
        create_app(settings, plugins=(EchoPlugin(), OtherEchoPlugin()))
    message = str(info.value)
    assert "image action 'echo' is provided by two plugins" in message
    assert "EchoPlugin and OtherEchoPlugin" in message


def test_duplicate_message_names_the_registered_plugins(settings: Settings) -> None:
    pm = build_plugin_manager(settings)
    first, second = EchoPlugin(), OtherEchoPlugin()
    pm.register(first, name="first-echo")
    pm.register(second, name="second-echo")
    with pytest.raises(PluginError) as info:
        Hooks(pm).provided()
    assert "first-echo" in str(info.value)
    assert "second-echo" in str(info.value)
    assert "image action 'echo'" in str(info.value)


def test_duplicate_storage_kind(settings: Settings) -> None:
    with pytest.raises(PluginError, match="storage kind 'memory-test'"):
        create_app(settings, plugins=(StoragePlugin(), StoragePlugin()))


def test_disabled_by_settings(settings: Settings) -> None:
    app = create_app(replace(settings, disabled_plugins=("export",)))
    assert "export" not in app[ACTIONS]


def test_disabled_by_module_name(settings: Settings) -> None:
    app = create_app(replace(settings, disabled_plugins=("plugins.actions.export",)))
    assert "export" not in app[ACTIONS]


def test_disabled_by_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDAPI_GATEWAY_DISABLED_PLUGINS", " s3 , export")
    app = create_app(settings)
    assert "export" not in app[ACTIONS]
    pm = app[PLUGIN_MANAGER]
    assert pm.is_blocked("s3")


def test_disabling_the_catalog_plugin_fails_with_known_kinds(settings: Settings) -> None:
    with pytest.raises(ConfigurationError) as info:
        create_app(replace(settings, disabled_plugins=("embedded-catalog",)))
    assert "catalog.kind = 'embedded' is unknown" in str(info.value)


def test_unknown_catalog_kind_lists_known(settings: Settings) -> None:
    with pytest.raises(ConfigurationError) as info:
        create_app(replace(settings, catalog={"kind": "imgapi"}))
    assert "'imgapi' is unknown" in str(info.value)
    assert "embedded" in str(info.value)


def test_unknown_storage_kind_lists_known(settings: Settings) -> None:
    with pytest.raises(ConfigurationError) as info:
        create_app(replace(settings, storage={"kind": "floppy"}), plugins=(StoragePlugin(),))
    assert "storage.kind = 'floppy' is unknown" in str(info.value)
    assert "memory-test" in str(info.value)


def test_bad_storage_config_is_reported(settings: Settings) -> None:
    with pytest.raises(ConfigurationError, match="bucket is required"):
        create_app(replace(settings, storage={"kind": "memory-test"}), plugins=(StoragePlugin(),))


def test_no_storage_means_none(settings: Settings) -> None:
    assert create_app(settings)[STORAGE] is None


def test_hookimpl_without_spec_fails_check_pending(settings: Settings) -> None:
    class Typo:
        @hookimpl
        def gateway_register_image_action(self) -> list[Any]:  # missing "s"
            return []

    with pytest.raises(PluginError, match="gateway_register_image_action"):
        create_app(settings, plugins=(Typo(),))


def test_invalid_action_schema_stops_the_start(settings: Settings) -> None:
    class BadSchema(EchoAction):
        name = "bad"
        schema = {"type": "object", "properties": {"x": {"type": "strin"}}}

    class Plugin:
        @hookimpl
        def gateway_register_image_actions(self) -> list[Any]:
            return [BadSchema()]

    with pytest.raises(PluginError) as info:
        create_app(settings, plugins=(Plugin(),))
    assert "action 'bad'" in str(info.value)
    assert "invalid JSON Schema" in str(info.value)


def test_action_without_async_run_is_refused(settings: Settings) -> None:
    class Sync:
        name = "sync"
        schema: dict[str, Any] = {}

        def run(self, ctx: Any, params: Any) -> dict[str, Any]:
            return {}

    class Plugin:
        @hookimpl
        def gateway_register_image_actions(self) -> list[Any]:
            return [Sync()]

    with pytest.raises(PluginError, match="async def run"):
        create_app(settings, plugins=(Plugin(),))


def test_hook_returning_a_non_list_is_refused(settings: Settings) -> None:
    class Plugin:
        @hookimpl
        def gateway_register_image_actions(self) -> Any:
            return EchoAction()

    with pytest.raises(PluginError, match="must return a list"):
        create_app(settings, plugins=(Plugin(),))


@pytest.mark.parametrize("style", ["wrapper", "hookwrapper"])
def test_hook_wrappers_are_refused_at_load(settings: Settings, style: str) -> None:
    """A wrapper would never run (each plugin's list is collected on its own): refused, by name."""

    class Wrapping:
        @hookimpl(**{style: True})
        def gateway_register_image_actions(self) -> Any:
            result = yield
            return result

    with pytest.raises(PluginError) as info:
        create_app(settings, plugins=(Wrapping(),))
    message = str(info.value)
    assert "Wrapping" in message and "gateway_register_image_actions" in message
    assert "hook wrapper" in message
