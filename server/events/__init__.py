"""The church event log: append inside a transaction, publish after commit."""
