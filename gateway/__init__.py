"""cloudapi-gateway's plugin contract: the hook marker, the versions, and the modules beside it.

Plugins import only from this package's contract modules: ``hookspecs``, ``actions``,
``storage``, ``catalog``, ``errors``, ``settings``, ``journal``, ``httpsig`` and
``plugin_kit``. The host is ``gateway.server`` and the command line ``gateway.cli``; neither
is for plugins.

Plugin authors import the marker from here::

    from gateway import hookimpl

    @hookimpl
    def gateway_register_image_actions():
        return [MyAction()]

and register the module under the ``cloudapi_gateway`` entry-point group::

    [project.entry-points.cloudapi_gateway]
    my-plugin = "my_package.my_module"
"""

from importlib.metadata import PackageNotFoundError, version

import pluggy

PROJECT_NAME = "cloudapi_gateway"

#: The plugin API's version, ``MAJOR.MINOR`` (docs/plugins.md, "Versions and deprecations"): a
#: minor release adds to it or deprecates a path, which keeps working with a DeprecationWarning
#: for at least one release; only a major release removes or changes anything.
PLUGIN_API_VERSION = "1.2"

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

try:
    __version__ = version("cloudapi-gateway")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0"

__all__ = ["PLUGIN_API_VERSION", "PROJECT_NAME", "__version__", "hookimpl"]
