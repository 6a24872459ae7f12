"""The HTTP side: health, metrics, the message API and carrier webhooks (one aiohttp app)."""
