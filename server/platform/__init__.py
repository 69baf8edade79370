"""Platform plumbing every layer may use: settings, logging, errors, Redis keys and locks,
crypto, metrics, tracing, the Huey queue, caching, rate limits."""
