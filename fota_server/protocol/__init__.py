"""Sans-IO protocol code shared by the server and the device emulator: bytes and events in, bytes and events out.

Nothing in this package may import asyncio, sockets, SQLite, web frameworks or read the clock.
"""
