"""prisme-keys: administration of the RSA signing keys (JWKs) of a Prisme.ai-style API gateway."""

__version__ = "0.1.0"
