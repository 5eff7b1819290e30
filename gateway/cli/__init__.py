"""The ``cloudapi-gateway`` command line: one module per command group, rooted in ``main``.

The only layer that may import ``fake_manta`` (dev mode runs one).
"""
