"""The runtime: CLI, ZeroMQ server, wire protocol, sessions, simulator client and scenario replay."""
