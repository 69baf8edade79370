"""Platform plumbing every layer may use: settings, logging, errors, Redis keys and locks, crypto, metrics, the Huey queue, caching, rate limits."""
