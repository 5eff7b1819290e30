"""The host: ``create_app``, its plugin manager, middlewares, auth, accounts and views.

Plugins never import from here; they import the contract modules of ``gateway`` itself.
"""
