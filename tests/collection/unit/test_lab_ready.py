"""The lab's readiness probe: a site is ready when its sshd sends its banner."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from ansible_collections.ikelab.ipsec.plugins.module_utils.lab.sites import sshd_answers


@pytest.fixture
def slow_sshd() -> Iterator[int]:
    """A listener that sends an SSH banner 1.5 s after each connection (a loaded guest's sshd
    starts a new process first); returns its port."""
    srv = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                if not stop.wait(1.5):
                    try:
                        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
                    except OSError:
                        pass  # the probe gave up and closed
                    time.sleep(0.1)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    srv.close()
    t.join(5)


def test_a_slow_banner_counts_as_ready(slow_sshd: int) -> None:
    assert sshd_answers("127.0.0.1", port=slow_sshd)


def test_a_probe_that_gives_up_before_the_banner_never_sees_it(slow_sshd: int) -> None:
    # what the probe did with its 1 s wait: each try closed before the banner came
    assert not sshd_answers("127.0.0.1", banner_wait=1.0, port=slow_sshd)


def test_nothing_listening_is_not_ready() -> None:
    s = socket.create_server(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    assert not sshd_answers("127.0.0.1", port=port)
