"""SMS rules independent of any carrier: E.164 phones, segments, opt-out keywords, send throttle."""
