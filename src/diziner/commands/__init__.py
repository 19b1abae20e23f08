"""Sub-commands of the ``diziner`` CLI: one module each, with ``register(app)``."""
