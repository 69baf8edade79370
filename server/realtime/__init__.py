"""The live stream: the per-process hub of sockets per church fed by one Redis subscription."""
