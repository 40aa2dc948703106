"""A small client for strongSwan's VICI protocol (the control socket that swanctl uses).

Written from the protocol description (strongSwan docs, "VICI protocol"): every packet is a
32-bit big-endian length and a body; the body starts with a packet type and, for named types,
a length-prefixed name; messages are a sequence of elements (sections, key/values, lists).
Values come back as ``str`` (decoded as UTF-8 with replacement) — tests compare text.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from enum import IntEnum
from typing import Any

Message = dict[str, Any]


class PacketType(IntEnum):
    CMD_REQUEST = 0
    CMD_RESPONSE = 1
    CMD_UNKNOWN = 2
    EVENT_REGISTER = 3
    EVENT_UNREGISTER = 4
    EVENT_CONFIRM = 5
    EVENT_UNKNOWN = 6
    EVENT = 7


class Element(IntEnum):
    SECTION_START = 1
    SECTION_END = 2
    KEY_VALUE = 3
    LIST_START = 4
    LIST_ITEM = 5
    LIST_END = 6


NAMED = {PacketType.CMD_REQUEST, PacketType.EVENT_REGISTER, PacketType.EVENT_UNREGISTER}
NAMED_IN = {PacketType.EVENT}


class ViciError(Exception):
    pass


def encode(msg: Message) -> bytes:
    out = bytearray()
    for key, value in msg.items():
        name = key.encode()
        if isinstance(value, dict):
            out += bytes([Element.SECTION_START, len(name)]) + name
            out += encode(value)
            out += bytes([Element.SECTION_END])
        elif isinstance(value, list | tuple):
            out += bytes([Element.LIST_START, len(name)]) + name
            for item in value:
                data = _bytes(item)
                out += bytes([Element.LIST_ITEM]) + struct.pack("!H", len(data)) + data
            out += bytes([Element.LIST_END])
        else:
            data = _bytes(value)
            out += bytes([Element.KEY_VALUE, len(name)]) + name
            out += struct.pack("!H", len(data)) + data
    return bytes(out)


def _bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bool):
        return b"yes" if value else b"no"
    return str(value).encode()


def decode(data: bytes) -> Message:
    root: Message = {}
    stack: list[Message] = [root]
    current_list: list[str] | None = None
    pos = 0

    def name() -> str:
        nonlocal pos
        n = data[pos]
        text = data[pos + 1 : pos + 1 + n].decode()
        pos += 1 + n
        return text

    def value() -> str:
        nonlocal pos
        (n,) = struct.unpack_from("!H", data, pos)
        text = data[pos + 2 : pos + 2 + n].decode(errors="replace")
        pos += 2 + n
        return text

    while pos < len(data):
        kind = data[pos]
        pos += 1
        if kind == Element.SECTION_START:
            section: Message = {}
            stack[-1][name()] = section
            stack.append(section)
        elif kind == Element.SECTION_END:
            stack.pop()
        elif kind == Element.KEY_VALUE:
            key = name()
            stack[-1][key] = value()
        elif kind == Element.LIST_START:
            current_list = []
            stack[-1][name()] = current_list
        elif kind == Element.LIST_ITEM:
            if current_list is None:
                raise ViciError("list item outside a list")
            current_list.append(value())
        elif kind == Element.LIST_END:
            current_list = None
        else:
            raise ViciError(f"unknown element type {kind}")
    return root


class Session:
    """One connection to a charon's VICI socket."""

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, ptype: PacketType, name: str | None = None, msg: Message | None = None) -> None:
        body = bytes([ptype])
        if name is not None:
            raw = name.encode()
            body += bytes([len(raw)]) + raw
        body += encode(msg or {})
        self.sock.sendall(struct.pack("!I", len(body)) + body)

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ViciError("VICI socket closed")
            buf += chunk
        return bytes(buf)

    def _recv(self) -> tuple[PacketType, str | None, Message]:
        (n,) = struct.unpack("!I", self._recv_exact(4))
        body = self._recv_exact(n)
        ptype = PacketType(body[0])
        pos = 1
        name = None
        if ptype in NAMED_IN:
            ln = body[1]
            name = body[2 : 2 + ln].decode()
            pos = 2 + ln
        return ptype, name, decode(body[pos:])

    def request(self, command: str, msg: Message | None = None) -> Message:
        self._send(PacketType.CMD_REQUEST, command, msg)
        ptype, _, reply = self._recv()
        if ptype == PacketType.CMD_UNKNOWN:
            raise ViciError(f"unknown VICI command {command!r}")
        if ptype != PacketType.CMD_RESPONSE:
            raise ViciError(f"unexpected VICI packet {ptype.name}")
        return reply

    def streamed(self, command: str, event: str, msg: Message | None = None) -> Iterator[Message]:
        """Run a command that answers with events (list-sas, initiate with logs, ...)."""
        self._send(PacketType.EVENT_REGISTER, event)
        ptype, _, _ = self._recv()
        if ptype != PacketType.EVENT_CONFIRM:
            raise ViciError(f"cannot register for {event!r}: {ptype.name}")
        self._send(PacketType.CMD_REQUEST, command, msg)
        events: list[Message] = []
        while True:
            ptype, name, reply = self._recv()
            if ptype == PacketType.EVENT and name == event:
                events.append(reply)
                continue
            if ptype == PacketType.CMD_RESPONSE:
                break
            if ptype == PacketType.CMD_UNKNOWN:
                raise ViciError(f"unknown VICI command {command!r}")
        self._send(PacketType.EVENT_UNREGISTER, event)
        self._recv()
        if reply.get("success") == "no":
            raise ViciError(f"{command} failed: {reply.get('errmsg', '')}")
        yield from events


def list_sas(path: str, timeout: float = 10.0) -> Message:
    """All IKE SAs as ``{ike_name: {..., "child-sas": {unique: {...}}}}`` merged into one dict.

    If two IKE SAs share a config name, the later ones get ``#<uniqueid>`` appended."""
    result: Message = {}
    with Session(path, timeout) as s:
        for event in s.streamed("list-sas", "list-sa"):
            for name, sa in event.items():
                key = name if name not in result else f"{name}#{sa.get('uniqueid', '?')}"
                result[key] = sa
    return result
