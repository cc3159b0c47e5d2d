"""SyncML DM 1.2 messages as typed records, and their XML and WBXML encodings (OMA-TS-DM_Protocol-V1_2_1,
OMA-TS-SyncML-RepPro-V1_2_2; reference §1-2).

``decode_message`` sniffs the encoding (first byte 0x01-0x03 is WBXML, ``<`` is XML), enforces the caps
and raises only DecodeError. One ``Command`` record serves every SyncML command, Status and Results.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import DecodeError
from .tree import DEFAULT_LIMITS, Element, Limits
from .wbxml import decode_wbxml, encode_wbxml
from .xmlcodec import decode_xml, encode_xml

__all__ = [
    "Encoding", "Meta", "Chal", "Cred", "Item", "Command", "SyncHdr", "Message",
    "decode_message", "encode_message", "sniff_encoding", "encoding_of_content_type", "CONTENT_TYPES",
    "MAX_COMMANDS", "MAX_ITEMS",
]

MAX_COMMANDS = 256
MAX_ITEMS = 64
_COMMANDS = frozenset({"Add", "Alert", "Atomic", "Copy", "Delete", "Exec", "Get", "Replace", "Sequence",
                       "Status", "Results"})
_CONTAINERS = frozenset({"Atomic", "Sequence"})


class Encoding(enum.Enum):
    XML = "xml"
    WBXML = "wbxml"


CONTENT_TYPES = {
    "application/vnd.syncml.dm+xml": Encoding.XML,
    "application/vnd.syncml.dm+wbxml": Encoding.WBXML,
    "application/vnd.syncml+xml": Encoding.XML,
    "application/vnd.syncml+wbxml": Encoding.WBXML,
}


def encoding_of_content_type(content_type: str) -> Encoding | None:
    return CONTENT_TYPES.get(content_type.split(";", 1)[0].strip().lower())


def sniff_encoding(body: bytes) -> Encoding:
    """Reference §1: first byte 0x01-0x03 is WBXML, ``<`` after an optional BOM or whitespace is XML."""
    if body[:1] in (b"\x01", b"\x02", b"\x03"):
        return Encoding.WBXML
    if body.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] == b"<":
        return Encoding.XML
    raise DecodeError("body is neither SyncML XML nor WBXML", hint="415")


@dataclass(frozen=True)
class Meta:
    format: str = ""
    type: str = ""
    mark: str = ""
    size: int | None = None
    next_nonce: str = ""
    max_msg_size: int | None = None
    max_obj_size: int | None = None


@dataclass(frozen=True)
class Chal:
    meta: Meta


@dataclass(frozen=True)
class Cred:
    meta: Meta
    data: str


@dataclass(frozen=True)
class Item:
    target: str = ""
    source: str = ""
    meta: Meta | None = None
    data: str = ""
    more_data: bool = False


@dataclass(frozen=True)
class Command:
    """Any SyncML command. Status and Results use the ``*_ref`` fields; Alert and Status carry ``data``."""

    name: str
    cmd_id: int
    items: tuple[Item, ...] = ()
    data: str = ""
    meta: Meta | None = None
    correlator: str = ""
    no_resp: bool = False
    msg_ref: int | None = None
    cmd_ref: int | None = None
    cmd: str = ""
    target_refs: tuple[str, ...] = ()
    source_refs: tuple[str, ...] = ()
    chal: Chal | None = None
    children: tuple["Command", ...] = ()


@dataclass(frozen=True)
class SyncHdr:
    session_id: str
    msg_id: int
    target: str
    source: str
    ver_dtd: str = "1.2"
    ver_proto: str = "DM/1.2"
    loc_name: str = ""
    cred: Cred | None = None
    meta: Meta | None = None
    resp_uri: str = ""
    no_resp: bool = False


@dataclass(frozen=True)
class Message:
    header: SyncHdr
    commands: tuple[Command, ...] = ()
    final: bool = True


def _int(text: str, what: str) -> int:
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        raise DecodeError(f"{what} is not a number: {text[:20]!r}", hint="400")
    return int(text)


def _opt_int(node: Element, tag: str) -> int | None:
    text = node.child_text(tag)
    return _int(text, tag) if text else None


def _meta(node: Element | None) -> Meta | None:
    if node is None:
        return None
    source = node.child("MetInf") or node
    return Meta(
        format=source.child_text("Format"), type=source.child_text("Type"), mark=source.child_text("Mark"),
        size=_opt_int(source, "Size"), next_nonce=source.child_text("NextNonce"),
        max_msg_size=_opt_int(source, "MaxMsgSize"), max_obj_size=_opt_int(source, "MaxObjSize"),
    )


def _uri(node: Element, tag: str) -> str:
    holder = node.child(tag)
    return "" if holder is None else holder.child_text("LocURI")


def _item(node: Element) -> Item:
    data = node.child("Data")
    return Item(target=_uri(node, "Target"), source=_uri(node, "Source"), meta=_meta(node.child("Meta")),
                data="" if data is None else data.value, more_data=node.child("MoreData") is not None)


def _command(node: Element, depth: int = 0) -> Command:
    if node.tag not in _COMMANDS:
        raise DecodeError(f"unknown SyncML command <{node.tag}>", hint="406")
    items = node.all("Item")
    if len(items) > MAX_ITEMS:
        raise DecodeError(f"more than {MAX_ITEMS} items in one command", hint="413")
    children: tuple[Command, ...] = ()
    if node.tag in _CONTAINERS:
        if depth > 2:
            raise DecodeError("Atomic/Sequence nested too deeply", hint="400")
        children = tuple(_command(c, depth + 1) for c in node.children if c.tag in _COMMANDS)
    chal = node.child("Chal")
    return Command(
        name=node.tag, cmd_id=_int(node.child_text("CmdID", "0"), "CmdID"), items=tuple(_item(i) for i in items),
        data=node.child_text("Data").strip(), meta=_meta(node.child("Meta")), correlator=node.child_text("Correlator"),
        no_resp=node.child("NoResp") is not None, msg_ref=_opt_int(node, "MsgRef"), cmd_ref=_opt_int(node, "CmdRef"),
        cmd=node.child_text("Cmd"), target_refs=tuple(t.value for t in node.all("TargetRef")),
        source_refs=tuple(s.value for s in node.all("SourceRef")),
        chal=None if chal is None else Chal(_meta(chal.child("Meta")) or Meta()), children=children,
    )


def _header(node: Element) -> SyncHdr:
    cred = node.child("Cred")
    return SyncHdr(
        session_id=node.child_text("SessionID"), msg_id=_int(node.child_text("MsgID"), "MsgID"),
        target=_uri(node, "Target"), source=_uri(node, "Source"), ver_dtd=node.child_text("VerDTD"),
        ver_proto=node.child_text("VerProto"),
        loc_name=(node.child("Source") or Element("Source")).child_text("LocName"),
        cred=None if cred is None else Cred(_meta(cred.child("Meta")) or Meta(), cred.child_text("Data")),
        meta=_meta(node.child("Meta")), resp_uri=node.child_text("RespURI"), no_resp=node.child("NoResp") is not None,
    )


def message_from_tree(root: Element) -> Message:
    if root.tag != "SyncML":
        raise DecodeError(f"root element is <{root.tag}>, not <SyncML>", hint="400")
    header, body = root.child("SyncHdr"), root.child("SyncBody")
    if header is None or body is None:
        raise DecodeError("SyncML without SyncHdr or SyncBody", hint="400")
    commands = [c for c in body.children if c.tag != "Final"]
    if len(commands) > MAX_COMMANDS:
        raise DecodeError(f"more than {MAX_COMMANDS} commands in one message", hint="413")
    return Message(_header(header), tuple(_command(c) for c in commands), body.child("Final") is not None)


def decode_message(body: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[Message, Encoding]:
    """Decode one SyncML DM message in either encoding; raises only DecodeError."""
    if len(body) > limits.max_bytes:
        raise DecodeError(f"message of {len(body)} bytes exceeds {limits.max_bytes}", hint="413")
    encoding = sniff_encoding(body)
    root = decode_wbxml(body, limits) if encoding is Encoding.WBXML else decode_xml(body, limits)
    return message_from_tree(root), encoding


# --- encoding -------------------------------------------------------------------------------------

def _leaf(tag: str, text: str | int | None) -> list[Element]:
    return [] if text is None or text == "" else [Element(tag, text=str(text))]


def _meta_tree(meta: Meta | None) -> list[Element]:
    if meta is None:
        return []
    children = [*_leaf("Format", meta.format), *_leaf("Type", meta.type), *_leaf("Mark", meta.mark),
                *_leaf("Size", meta.size), *_leaf("NextNonce", meta.next_nonce),
                *_leaf("MaxMsgSize", meta.max_msg_size), *_leaf("MaxObjSize", meta.max_obj_size)]
    return [Element("Meta", tuple(children))] if children else []


def _loc(tag: str, uri: str, name: str = "") -> list[Element]:
    if not uri:
        return []
    return [Element(tag, (Element("LocURI", text=uri), *_leaf("LocName", name)))]


def _item_tree(item: Item) -> Element:
    return Element("Item", (*_loc("Target", item.target), *_loc("Source", item.source), *_meta_tree(item.meta),
                            *_leaf("Data", item.data), *([Element("MoreData")] if item.more_data else [])))


def _command_tree(cmd: Command) -> Element:
    parts: list[Element] = [Element("CmdID", text=str(cmd.cmd_id))]
    if cmd.no_resp:
        parts.append(Element("NoResp"))
    parts += _leaf("MsgRef", cmd.msg_ref) + _leaf("CmdRef", cmd.cmd_ref) + _leaf("Cmd", cmd.cmd)
    parts += [Element("TargetRef", text=t) for t in cmd.target_refs]
    parts += [Element("SourceRef", text=s) for s in cmd.source_refs]
    if cmd.chal is not None:
        parts.append(Element("Chal", tuple(_meta_tree(cmd.chal.meta))))
    parts += _meta_tree(cmd.meta) + _leaf("Data", cmd.data) + _leaf("Correlator", cmd.correlator)
    parts += [_item_tree(i) for i in cmd.items] + [_command_tree(c) for c in cmd.children]
    return Element(cmd.name, tuple(parts))


def _header_tree(h: SyncHdr) -> Element:
    parts = [Element("VerDTD", text=h.ver_dtd), Element("VerProto", text=h.ver_proto),
             Element("SessionID", text=h.session_id), Element("MsgID", text=str(h.msg_id)),
             *_loc("Target", h.target), *_loc("Source", h.source, h.loc_name), *_leaf("RespURI", h.resp_uri)]
    if h.no_resp:
        parts.append(Element("NoResp"))
    if h.cred is not None:
        parts.append(Element("Cred", (*_meta_tree(h.cred.meta), Element("Data", text=h.cred.data))))
    parts += _meta_tree(h.meta)
    return Element("SyncHdr", tuple(parts))


def message_to_tree(message: Message) -> Element:
    body = [_command_tree(c) for c in message.commands] + ([Element("Final")] if message.final else [])
    return Element("SyncML", (_header_tree(message.header), Element("SyncBody", tuple(body))))


def encode_message(message: Message, encoding: Encoding) -> bytes:
    tree = message_to_tree(message)
    return encode_wbxml(tree) if encoding is Encoding.WBXML else encode_xml(tree)
