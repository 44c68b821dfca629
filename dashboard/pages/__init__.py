"""Pages of the dashboard: each offers ``match(path)``, ``layout(store, ...)`` and ``register(app, store)``."""
