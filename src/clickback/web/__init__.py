"""HTTP transport: the hot-path ASGI handlers and the admin API."""
