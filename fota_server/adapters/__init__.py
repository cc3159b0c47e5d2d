"""Adapters at the edge: sockets, files, web frameworks. They move data in and out of the core."""
