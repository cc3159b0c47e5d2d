"""The thin management REST layer: decode the request, call a service, encode the answer."""
