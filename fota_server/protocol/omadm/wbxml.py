"""A small WBXML codec for SyncML DM: code pages 0 (SyncML) and 1 (MetInf) only (WAP-192-WBXML; reference §8).

The decoder is hardened for hostile input: mb_u_int32 at most 5 bytes and 32 bits, string-table
offsets and OPAQUE lengths checked against the buffer, unknown pages and tokens, attributes, EXT,
PI and LITERAL tokens refused, nesting depth and element count capped. It raises only DecodeError.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DecodeError
from .tree import DEFAULT_LIMITS, Element, ElementCounter, Limits

__all__ = ["decode_wbxml", "encode_wbxml", "encode_mb_u_int32", "PUBLIC_ID_SYNCML_12", "PUBLIC_ID_SYNCML_11"]

PUBLIC_ID_SYNCML_12 = 0x1201
PUBLIC_ID_SYNCML_11 = 0x0FD3
_PUBLIC_IDS = {0x01, PUBLIC_ID_SYNCML_12, PUBLIC_ID_SYNCML_11}
_LITERAL_IDS = {"-//SYNCML//DTD SyncML 1.2//EN", "-//SYNCML//DTD SyncML 1.1//EN"}
_CHARSET_UTF8 = 0x6A

SWITCH_PAGE, END, STR_I, STR_T, OPAQUE = 0x00, 0x01, 0x03, 0x83, 0xC3

_PAGE0 = (
    "Add Alert Archive Atomic Chal Cmd CmdID CmdRef Copy Cred Data Delete Exec Final Get Item Lang LocName LocURI "
    "Map MapItem Meta MsgID MsgRef NoResp NoResults Put Replace RespURI Results Search Sequence SessionID SftDel "
    "Source SourceRef Status Sync SyncBody SyncHdr SyncML Target TargetRef - VerDTD VerProto NumberOfChanges "
    "MoreData Field Filter Record FilterType SourceParent TargetParent Move Correlator"
).split()
_PAGE1 = (
    "Anchor EMI Format FreeID FreeMem Last Mark MaxMsgSize Mem MetInf Next NextNonce SharedMem Size Type Version "
    "MaxObjSize FieldLevel"
).split()
_TAGS: dict[int, dict[int, str]] = {
    0: {0x05 + i: name for i, name in enumerate(_PAGE0) if name != "-"},
    1: {0x05 + i: name for i, name in enumerate(_PAGE1)},
}
_CODES: dict[str, tuple[int, int]] = {
    name: (page, code) for page, table in _TAGS.items() for code, name in table.items()
}


def encode_mb_u_int32(value: int) -> bytes:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError("mb_u_int32 out of range")
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def encode_wbxml(root: Element, public_id: int = PUBLIC_ID_SYNCML_12) -> bytes:
    """Encode with no string table: text as STR_I (OPAQUE when it holds a NUL), opaque bytes as OPAQUE."""
    out = bytearray([0x02])
    out += encode_mb_u_int32(public_id) + encode_mb_u_int32(_CHARSET_UTF8) + encode_mb_u_int32(0)
    page = [0]
    _encode(root, out, page)
    return bytes(out)


def _encode(node: Element, out: bytearray, page: list[int]) -> None:
    try:
        tag_page, code = _CODES[node.tag]
    except KeyError:
        raise ValueError(f"no WBXML token for element {node.tag!r}") from None
    if tag_page != page[0]:
        out += bytes([SWITCH_PAGE, tag_page])
        page[0] = tag_page
    has_content = bool(node.children) or node.opaque is not None or bool(node.text)
    out.append(code | 0x40 if has_content else code)
    if not has_content:
        return
    for child in node.children:
        _encode(child, out, page)
    if not node.children:
        if node.opaque is not None or "\x00" in node.text:
            data = node.opaque if node.opaque is not None else node.text.encode("utf-8")
            out += bytes([OPAQUE]) + encode_mb_u_int32(len(data)) + data
        else:
            out += bytes([STR_I]) + node.text.encode("utf-8") + b"\x00"
    out.append(END)


@dataclass
class _Reader:
    data: bytes
    pos: int = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise DecodeError("WBXML truncated", hint="400")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def mb_u_int32(self) -> int:
        value = 0
        for _ in range(5):
            octet = self.byte()
            value = (value << 7) | (octet & 0x7F)
            if not octet & 0x80:
                if value > 0xFFFFFFFF:
                    raise DecodeError("mb_u_int32 larger than 32 bits", hint="400")
                return value
        raise DecodeError("mb_u_int32 longer than 5 bytes", hint="400")

    def take(self, length: int) -> bytes:
        if length > len(self.data) - self.pos:
            raise DecodeError("WBXML length runs past the end", hint="400")
        chunk = self.data[self.pos:self.pos + length]
        self.pos += length
        return chunk

    def cstring(self, limit: int) -> bytes:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            raise DecodeError("unterminated inline string", hint="400")
        if end - self.pos > limit:
            raise DecodeError(f"inline string longer than {limit} bytes", hint="413")
        chunk = self.data[self.pos:end]
        self.pos = end + 1
        return chunk


@dataclass
class _Decoder:
    reader: _Reader
    strings: bytes
    limits: Limits
    counter: ElementCounter
    page: int = 0

    def string_at(self, offset: int) -> bytes:
        if offset >= len(self.strings):
            raise DecodeError("string-table offset out of range", hint="400")
        end = self.strings.find(b"\x00", offset)
        return self.strings[offset:] if end < 0 else self.strings[offset:end]

    def tag(self, token: int) -> tuple[str, bool]:
        if token & 0x80:
            raise DecodeError("WBXML attributes are not used by SyncML", hint="400")
        name = _TAGS[self.page].get(token & 0x3F)
        if name is None:
            raise DecodeError(f"unknown tag 0x{token:02x} on code page {self.page}", hint="400")
        return name, bool(token & 0x40)

    def next_token(self) -> int:
        token = self.reader.byte()
        while token == SWITCH_PAGE:
            page = self.reader.byte()
            if page not in _TAGS:
                raise DecodeError(f"unknown code page {page}", hint="400")
            self.page = page
            token = self.reader.byte()
        return token

    def element(self, token: int, depth: int) -> Element:
        """Decode one element; an explicit stack keeps hostile nesting off the Python stack."""
        name, has_content = self.tag(token)
        problem = self.counter.add(depth)
        if problem:
            raise DecodeError(problem, hint="413")
        if not has_content:
            return Element(name)
        stack: list[tuple[str, list[Element], bytearray, bool]] = [(name, [], bytearray(), False)]
        while True:
            token = self.next_token()
            tag, children, text, opaque = stack[-1]
            if token == END:
                stack.pop()
                node = self.finish(tag, children, text, opaque)
                if not stack:
                    return node
                stack[-1][1].append(node)
            elif token in (STR_I, STR_T, OPAQUE):
                chunk = self.text(token)
                if len(text) + len(chunk) > self.limits.max_text:
                    raise DecodeError(f"text longer than {self.limits.max_text} bytes", hint="413")
                text += chunk
                if token == OPAQUE:
                    stack[-1] = (tag, children, text, True)
            else:
                child, child_content = self.tag(token)
                problem = self.counter.add(depth + len(stack))
                if problem:
                    raise DecodeError(problem, hint="413")
                if child_content:
                    stack.append((child, [], bytearray(), False))
                else:
                    children.append(Element(child))

    def text(self, token: int) -> bytes:
        if token == STR_I:
            return self.reader.cstring(self.limits.max_text)
        if token == STR_T:
            return self.string_at(self.reader.mb_u_int32())
        return self.reader.take(self.reader.mb_u_int32())

    @staticmethod
    def finish(tag: str, children: list[Element], text: bytearray, opaque: bool) -> Element:
        if opaque:
            return Element(tag, tuple(children), "", bytes(text))
        try:
            return Element(tag, tuple(children), text.decode("utf-8"))
        except UnicodeDecodeError:
            raise DecodeError(f"text of <{tag}> is not UTF-8", hint="400") from None


def decode_wbxml(body: bytes, limits: Limits = DEFAULT_LIMITS) -> Element:
    """Decode one SyncML WBXML document; raises only DecodeError (hint: SyncML status)."""
    if len(body) > limits.max_bytes:
        raise DecodeError(f"WBXML message of {len(body)} bytes exceeds {limits.max_bytes}", hint="413")
    reader = _Reader(body)
    if reader.byte() not in (0x01, 0x02, 0x03):
        raise DecodeError("unsupported WBXML version", hint="415")
    public_id = reader.mb_u_int32()
    literal_index = reader.mb_u_int32() if public_id == 0 else None
    charset = reader.mb_u_int32()
    if charset not in (0, _CHARSET_UTF8):
        raise DecodeError(f"unsupported WBXML charset {charset}", hint="415")
    strings = reader.take(reader.mb_u_int32())
    decoder = _Decoder(reader, strings, limits, ElementCounter(limits))
    if literal_index is not None:
        if decoder.string_at(literal_index).decode("latin-1") not in _LITERAL_IDS:
            raise DecodeError("unknown literal public identifier", hint="415")
    elif public_id not in _PUBLIC_IDS:
        raise DecodeError(f"unknown WBXML public identifier 0x{public_id:x}", hint="415")
    root = decoder.element(decoder.next_token(), 1)
    if reader.pos != len(body):
        raise DecodeError("bytes after the WBXML root element", hint="400")
    return root
