"""Test kit for application test suites: a pytest plugin (:mod:`prisme_keys.testing.plugin`).

The plugin is registered through the ``pytest11`` entry point when prisme-keys is installed;
its fixtures (``prisme_keyset``, ``prisme_jwks_server``, ``prisme_token``) are built by
:mod:`prisme_keys.testing.kit`, imported only when a test uses one of them.
"""
