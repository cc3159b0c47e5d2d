"""HTTP(S) pull-based FOTA, sans-IO: the check-in manifest, status reports, byte ranges, time windows and the
hawkBit DDI v1 JSON shapes. Shared by the server's HTTP adapters and the device emulator."""
