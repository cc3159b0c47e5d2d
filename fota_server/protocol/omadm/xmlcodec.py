"""SyncML XML encoding over defusedxml, with size, depth and element-count caps (reference §11).

Entity declarations (XXE, billion laughs) are refused by defusedxml's defaults; a DOCTYPE alone is
allowed because valid SyncML may carry one. Namespaces are dropped on decode (some clients omit them)
and written back on encode: ``SYNCML:SYNCML1.2`` on the root, ``syncml:metinf`` on MetInf elements.
"""

from __future__ import annotations

import io
from xml.etree.ElementTree import ParseError
from xml.sax.saxutils import escape

import defusedxml
import defusedxml.ElementTree as safe_et

from ..errors import DecodeError
from .tree import DEFAULT_LIMITS, METINF_TAGS, Element, ElementCounter, Limits

__all__ = ["decode_xml", "encode_xml", "SYNCML_NS", "METINF_NS"]

SYNCML_NS = "SYNCML:SYNCML1.2"
METINF_NS = "syncml:metinf"
_METINF = frozenset(METINF_TAGS)
_RAW_TEXT = frozenset({"Data"})


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def decode_xml(body: bytes, limits: Limits = DEFAULT_LIMITS) -> Element:
    """Parse one SyncML XML document; raises only DecodeError (hint: SyncML status)."""
    if len(body) > limits.max_bytes:
        raise DecodeError(f"XML message of {len(body)} bytes exceeds {limits.max_bytes}", hint="413")
    counter = ElementCounter(limits)
    stack: list[list[Element]] = [[]]
    try:
        for event, node in safe_et.iterparse(io.BytesIO(body), events=("start", "end")):
            if event == "start":
                problem = counter.add(len(stack))
                if problem:
                    raise DecodeError(problem, hint="413")
                stack.append([])
                continue
            children = tuple(stack.pop())
            text = node.text or ""
            if len(text) > limits.max_text:
                raise DecodeError(f"text longer than {limits.max_text} characters", hint="413")
            tag = _local(node.tag)
            if children or tag not in _RAW_TEXT:
                text = text.strip()
            stack[-1].append(Element(tag, children, text))
            node.clear()
    except defusedxml.DefusedXmlException as exc:
        raise DecodeError(f"forbidden XML construct: {type(exc).__name__}", hint="400") from None
    except ParseError as exc:
        raise DecodeError(f"malformed XML: {exc}", hint="400") from None
    except (ValueError, UnicodeError, RecursionError) as exc:
        raise DecodeError(f"undecodable XML: {exc}", hint="400") from None
    roots = stack[0]
    if len(roots) != 1:
        raise DecodeError("XML without one root element", hint="400")
    return roots[0]


def encode_xml(root: Element) -> bytes:
    parts: list[str] = []
    _write(root, parts, is_root=True)
    return "".join(parts).encode("utf-8")


def _write(node: Element, parts: list[str], is_root: bool = False) -> None:
    attrs = ""
    if is_root:
        attrs = f" xmlns='{SYNCML_NS}'"
    elif node.tag in _METINF:
        attrs = f" xmlns='{METINF_NS}'"
    if not node.children and not node.value:
        parts.append(f"<{node.tag}{attrs}/>")
        return
    parts.append(f"<{node.tag}{attrs}>")
    if node.children:
        for child in node.children:
            _write(child, parts)
    else:
        parts.append(escape(node.value))
    parts.append(f"</{node.tag}>")
