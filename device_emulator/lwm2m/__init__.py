"""The emulated LwM2M client: registration, Objects 1, 3, 4 and 5, push and pull firmware, faults."""
