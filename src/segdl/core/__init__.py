"""Decisions and values: no sockets, threads or files."""
