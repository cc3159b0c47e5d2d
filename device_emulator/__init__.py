"""Device emulator: client state machines for LwM2M, HTTP(S) pull and OMA-DM over real sockets."""
