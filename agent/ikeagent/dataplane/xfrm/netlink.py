"""XFRM netlink sockets: requests and dumps, and the kernel's ACQUIRE/EXPIRE notifications.

``XfrmSocket`` is pyroute2's ``NetlinkSocket`` on ``NETLINK_XFRM`` with the XFRM marshal and
extended ACKs, so a refusal carries the kernel's own reason ("Requested AEAD algorithm not
found"). pyroute2's synchronous socket runs its own asyncio loop bound to the creating thread,
so one ``XfrmSocket`` is used from one thread only (the runtime's data-plane thread).

``XfrmListener`` reads the multicast groups XFRMNLGRP_ACQUIRE and XFRMNLGRP_EXPIRE on a socket
of its own, in a thread of its own that blocks in ``poll`` beside a wake-up pipe (so ``stop``
from another thread returns at once), and decodes with the same pyroute2 marshal. The socket
comes from pyroute2's ``netns.create_socket``, so a named network namespace works for both.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import threading
from collections.abc import Callable

from pyroute2.netlink import NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.nlsocket import NetlinkSocket
from pyroute2.netns import create_socket

from .messages import NETLINK_XFRM, MarshalXfrm, XfrmNlGroup, _XfrmMessage

log = logging.getLogger(__name__)

SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_NO_ENOBUFS = 5
RECV_SIZE = 65536


class XfrmError(OSError):
    """The kernel refused an XFRM request: ``errno`` plus the kernel's extended-ACK text."""

    def __init__(self, code: int, what: str, reason: str | None = None) -> None:
        self.reason = reason or os.strerror(code)
        name = errno.errorcode.get(code, str(code))
        super().__init__(code, f"{what}: {self.reason} ({name})")


class XfrmSocket:
    """Request/ACK and dump over NETLINK_XFRM (pyroute2 ``NetlinkSocket``)."""

    def __init__(self, netns: str | None = None) -> None:
        self._sock = NetlinkSocket(NETLINK_XFRM, ext_ack=True, netns=netns, nlm_generator=False)
        self._sock.set_marshal(MarshalXfrm())
        self._sock.bind()

    def request(self, msg: _XfrmMessage, msg_type: int, what: str, flags: int = 0) -> None:
        """Send ``msg`` with NLM_F_ACK and wait for the ACK; XfrmError on refusal."""
        try:
            self._sock.nlm_request(msg, msg_type, NLM_F_REQUEST | NLM_F_ACK | flags)
        except NetlinkError as exc:
            raise XfrmError(exc.code, what, _extack(exc)) from None

    def get(self, msg: _XfrmMessage, msg_type: int, what: str) -> _XfrmMessage:
        """A GET request answered by one message (GETSA, GETPOLICY)."""
        try:
            answers = self._sock.nlm_request(msg, msg_type, NLM_F_REQUEST)
        except NetlinkError as exc:
            raise XfrmError(exc.code, what, _extack(exc)) from None
        for answer in answers:
            if isinstance(answer, _XfrmMessage):
                return answer
        raise XfrmError(errno.ENOENT, what, "no answer")

    def dump(self, msg: _XfrmMessage, msg_type: int, what: str) -> list[_XfrmMessage]:
        """Every object of a kind (GETSA or GETPOLICY with NLM_F_DUMP)."""
        try:
            answers = self._sock.nlm_request(msg, msg_type, NLM_F_REQUEST | NLM_F_DUMP)
        except NetlinkError as exc:
            raise XfrmError(exc.code, what, _extack(exc)) from None
        return [a for a in answers if isinstance(a, _XfrmMessage)]

    def close(self) -> None:
        self._sock.close()


def _extack(exc: NetlinkError) -> str | None:
    text = exc.args[1] if len(exc.args) > 1 else None
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text or None


class XfrmListener:
    """A thread that hands every ACQUIRE/EXPIRE message to ``handler`` (on that thread)."""

    def __init__(
        self,
        handler: Callable[[_XfrmMessage], None],
        netns: str | None = None,
        groups: tuple[int, ...] = (XfrmNlGroup.ACQUIRE, XfrmNlGroup.EXPIRE),
    ) -> None:
        self._handler = handler
        self._sock = create_socket(
            netns=netns, family=socket.AF_NETLINK, socket_type=socket.SOCK_RAW, proto=NETLINK_XFRM
        )
        self._sock.bind((0, 0))
        for group in groups:
            self._sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, int(group))
        self._sock.setblocking(False)
        self._marshal = MarshalXfrm()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._running = False
        self._thread: threading.Thread | None = None
        self.overruns = 0  # ENOBUFS: the kernel dropped notifications

    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="xfrm-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._running = False
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._sock.close()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        self._wake_r = self._wake_w = -1

    def _loop(self) -> None:
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while self._running:
            poller.poll()
            while self._running:
                try:
                    data = self._sock.recv(RECV_SIZE)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno == errno.ENOBUFS:
                        self.overruns += 1
                        log.warning("XFRM notifications lost (socket buffer overrun)")
                        continue
                    log.warning("XFRM event socket failed: %s", exc)
                    return
                self.feed(data)

    def feed(self, data: bytes) -> None:
        """Decode one datagram of notifications and pass each to the handler."""
        for msg in self._marshal.parse(data):
            if not isinstance(msg, _XfrmMessage):
                continue
            try:
                self._handler(msg)
            except Exception:
                log.exception("XFRM event handler failed")
