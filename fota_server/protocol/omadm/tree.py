"""The element tree both SyncML encodings decode to, and the limits every decoder enforces.

SyncML DM uses elements without attributes or mixed content (OMA-TS-SyncML-RepPro-V1_2_2 §5), so an
element is a tag with either children, text, or opaque bytes (WBXML OPAQUE, WAP-192-WBXML §5.8.4.6).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Element", "Limits", "METINF_TAGS", "DEFAULT_LIMITS"]

# Code page 1 (MetInf) element names; every other SyncML DM name is on code page 0 (WAP-192 tables).
METINF_TAGS = (
    "Anchor", "EMI", "Format", "FreeID", "FreeMem", "Last", "Mark", "MaxMsgSize", "Mem", "MetInf", "Next",
    "NextNonce", "SharedMem", "Size", "Type", "Version", "MaxObjSize", "FieldLevel",
)


@dataclass(frozen=True)
class Element:
    tag: str
    children: tuple["Element", ...] = ()
    text: str = ""
    opaque: bytes | None = None

    def child(self, tag: str) -> "Element | None":
        for node in self.children:
            if node.tag == tag:
                return node
        return None

    def all(self, tag: str) -> list["Element"]:
        return [node for node in self.children if node.tag == tag]

    def child_text(self, tag: str, default: str = "") -> str:
        node = self.child(tag)
        return default if node is None else node.value

    @property
    def value(self) -> str:
        """The element's character data; opaque bytes read as UTF-8 (undecodable bytes become U+FFFD)."""
        if self.opaque is not None:
            return self.opaque.decode("utf-8", "replace")
        return self.text


@dataclass(frozen=True)
class Limits:
    """Caps applied before and during decoding (reference §11)."""

    max_bytes: int = 65_536
    max_depth: int = 16
    max_elements: int = 4_096
    max_text: int = 16_384

    def with_max_bytes(self, max_bytes: int) -> "Limits":
        return Limits(max_bytes, self.max_depth, self.max_elements, self.max_text)


DEFAULT_LIMITS = Limits()


@dataclass
class ElementCounter:
    """Counts elements while decoding so that a decoder can refuse too many."""

    limits: Limits
    count: int = field(default=0)

    def add(self, depth: int) -> str | None:
        self.count += 1
        if self.count > self.limits.max_elements:
            return f"more than {self.limits.max_elements} elements"
        if depth > self.limits.max_depth:
            return f"elements nested deeper than {self.limits.max_depth}"
        return None
