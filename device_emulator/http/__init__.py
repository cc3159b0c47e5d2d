"""The emulated HTTP pull device: a sans-IO client machine (``machine``) driven by a real link
(``device_emulator.links.http``)."""
