"""cloudapi-gateway: Triton CloudAPI's image endpoints, with image actions and storage as plugins.

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

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

try:
    __version__ = version("cloudapi-gateway")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0"

__all__ = ["PROJECT_NAME", "__version__", "hookimpl"]
