"""LwM2M, sans-IO: paths, content formats (TLV, SenML JSON/CBOR, LwM2M JSON, text, opaque, link-format),
the objects the FOTA server uses (1, 3, 4, 5), the registration interface and the firmware-update machine."""
