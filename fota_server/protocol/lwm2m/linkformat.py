"""CoRE Link Format (RFC 6690, Content-Format 40) and the LwM2M object list it carries in Register and
Update (LwM2M Core 1.1 §6.2.1, §5.3.1).

Example: ``</>;rt="oma.lwm2m";ct=110,</1>;ver=1.1,</1/0>,</3/0>,</5/0>``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from ..errors import DecodeError

__all__ = ["Link", "ObjectList", "parse_links", "encode_links", "parse_object_list", "encode_object_list",
           "MAX_LINK_FORMAT_BYTES", "MAX_LINKS"]

MAX_LINK_FORMAT_BYTES = 16 * 1024
MAX_LINKS = 512
_TOKEN_CHARS = set("!#$%&'()*+-./:<=>?@[]^_`{|}~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True)
class Link:
    target: str
    attributes: tuple[tuple[str, str | None], ...] = ()

    def attribute(self, name: str) -> str | None:
        for key, value in self.attributes:
            if key == name:
                return value
        return None

    def has(self, name: str) -> bool:
        return any(key == name for key, _ in self.attributes)


def parse_links(data: bytes) -> tuple[Link, ...]:
    """Parse a link-format document; raises only DecodeError (hint 4.00, or 4.13 over the caps)."""
    if len(data) > MAX_LINK_FORMAT_BYTES:
        raise DecodeError("link-format payload too large", hint="4.13")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("link-format is not UTF-8", hint="4.00") from None
    links: list[Link] = []
    pos = 0
    while pos < len(text):
        link, pos = _link(text, pos)
        links.append(link)
        if len(links) > MAX_LINKS:
            raise DecodeError("too many links", hint="4.13")
        if pos < len(text):
            if text[pos] != ",":
                raise DecodeError(f"expected ',' at offset {pos}", hint="4.00")
            pos += 1
            if pos == len(text):
                raise DecodeError("link-format ends with ','", hint="4.00")
    return tuple(links)


def _link(text: str, pos: int) -> tuple[Link, int]:
    if text[pos] != "<":
        raise DecodeError(f"expected '<' at offset {pos}", hint="4.00")
    end = text.find(">", pos)
    if end < 0:
        raise DecodeError("unterminated link target", hint="4.00")
    target = text[pos + 1:end]
    if any(c in target for c in "<, \t\r\n"):
        raise DecodeError("link target holds a forbidden character", hint="4.00")
    pos = end + 1
    attributes: list[tuple[str, str | None]] = []
    while pos < len(text) and text[pos] == ";":
        key, value, pos = _attribute(text, pos + 1)
        attributes.append((key, value))
        if len(attributes) > 32:
            raise DecodeError("too many link attributes", hint="4.13")
    return Link(target, tuple(attributes)), pos


def _attribute(text: str, pos: int) -> tuple[str, str | None, int]:
    start = pos
    while pos < len(text) and (text[pos].isascii() and (text[pos].isalnum() or text[pos] in "-_.*")):
        pos += 1
    key = text[start:pos]
    if not key:
        raise DecodeError(f"empty attribute name at offset {start}", hint="4.00")
    if pos >= len(text) or text[pos] != "=":
        return key, None, pos
    pos += 1
    if pos < len(text) and text[pos] == '"':
        return (key, *_quoted(text, pos + 1))
    start = pos
    while pos < len(text) and text[pos] in _TOKEN_CHARS and text[pos] not in ",;":
        pos += 1
    return key, text[start:pos], pos


def _quoted(text: str, pos: int) -> tuple[str, int]:
    out: list[str] = []
    while pos < len(text):
        char = text[pos]
        if char == "\\" and pos + 1 < len(text):
            out.append(text[pos + 1])
            pos += 2
            continue
        if char == '"':
            return "".join(out), pos + 1
        out.append(char)
        pos += 1
    raise DecodeError("unterminated quoted attribute value", hint="4.00")


def encode_links(links: tuple[Link, ...] | list[Link]) -> bytes:
    parts = []
    for link in links:
        attrs = "".join(
            f";{key}" if value is None else f";{key}={_attr_value(value)}" for key, value in link.attributes
        )
        parts.append(f"<{link.target}>{attrs}")
    return ",".join(parts).encode()


def _attr_value(value: str) -> str:
    if value and all(c in _TOKEN_CHARS and c not in ",;" for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class ObjectList:
    """What a client says it has: object id -> (version or None, instance ids). ``content_formats`` keeps
    every number of the root link's ``ct`` (``ct=110`` in 1.1, ``ct="60 110 112 11542"`` in 1.2, Core 1.2
    §6.2.1), in the client's order; ``content_format`` is the first of them."""

    root: str = "/"
    content_format: int | None = None
    versions: dict[int, str] = field(default_factory=dict)
    instances: dict[int, tuple[int, ...]] = field(default_factory=dict)
    content_formats: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.content_formats and self.content_format is not None:
            object.__setattr__(self, "content_formats", (self.content_format,))
        elif self.content_formats and self.content_format is None:
            object.__setattr__(self, "content_format", self.content_formats[0])

    def __hash__(self) -> int:
        return hash((self.root, self.content_format, tuple(sorted(self.versions.items())),
                     tuple(sorted(self.instances.items())), self.content_formats))

    @property
    def object_ids(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.versions) | set(self.instances)))

    def has_instance(self, object_id: int, instance_id: int = 0) -> bool:
        return instance_id in self.instances.get(object_id, ())


def parse_object_list(data: bytes) -> ObjectList:
    """The object list of a Register or Update payload. Links outside the LwM2M root are ignored.

    Devices of one model send the same payload, so results are cached and shared (treat them as read-only).
    """
    return _parse_object_list(bytes(data))


@functools.lru_cache(maxsize=512)
def _parse_object_list(data: bytes) -> ObjectList:
    links = parse_links(data)
    root = "/"
    content_formats: tuple[int, ...] = ()
    for link in links:
        if link.attribute("rt") == "oma.lwm2m" or link.target == "/":
            root = link.target.rstrip("/") + "/"
            content_formats = _format_list(link.attribute("ct"))
    versions: dict[int, str] = {}
    instances: dict[int, list[int]] = {}
    for link in links:
        ids = _object_ids(link.target, root)
        if ids is None:
            continue
        instances.setdefault(ids[0], [])
        if len(ids) == 2 and ids[1] not in instances[ids[0]]:
            instances[ids[0]].append(ids[1])
        version = link.attribute("ver")
        if version is not None and len(ids) == 1:
            versions[ids[0]] = version[:16]
    return ObjectList(root, content_formats[0] if content_formats else None, versions,
                      {k: tuple(v) for k, v in instances.items()}, content_formats)


MAX_ANNOUNCED_FORMATS = 16


def _format_list(text: str | None) -> tuple[int, ...]:
    """The numbers of a ``ct`` attribute, space separated (RFC 7252 §7.2.1); anything that is not a number
    below 65536 is skipped, and at most ``MAX_ANNOUNCED_FORMATS`` are kept."""
    if text is None:
        return ()
    out: list[int] = []
    for part in text[:256].split(" "):
        if part.isascii() and part.isdigit() and len(part) <= 5 and int(part) < 65536 and int(part) not in out:
            out.append(int(part))
            if len(out) == MAX_ANNOUNCED_FORMATS:
                break
    return tuple(out)


def _object_ids(target: str, root: str) -> tuple[int, ...] | None:
    if not target.startswith(root):
        return None
    parts = target[len(root):].strip("/").split("/")
    if not parts[0] or len(parts) > 2 or not all(p.isdigit() and p.isascii() and len(p) <= 5 for p in parts):
        return None
    ids = tuple(int(p) for p in parts)
    return ids if all(i <= 65534 for i in ids) else None


def encode_object_list(objects: ObjectList) -> bytes:
    links: list[Link] = []
    if objects.root != "/" or objects.content_formats:
        attrs: list[tuple[str, str | None]] = [("rt", "oma.lwm2m")]
        if objects.content_formats:
            attrs.append(("ct", " ".join(str(f) for f in objects.content_formats)))
        links.append(Link(objects.root.rstrip("/") or "/", tuple(attrs)))
    prefix = objects.root.rstrip("/")
    for object_id in objects.object_ids:
        version = objects.versions.get(object_id)
        ids = objects.instances.get(object_id, ())
        if version is not None or not ids:
            links.append(Link(f"{prefix}/{object_id}", (("ver", version),) if version else ()))
        links.extend(Link(f"{prefix}/{object_id}/{i}") for i in ids)
    return encode_links(links)

