"""IKEv2: deleting an IKE SA while one of our requests is in flight on it (RFC 7296 2.3, one
request at a time). The Delete goes once that request is answered; a peer that only lost its
answer answers it again at once (from its cache). If the peer never got that request, the
Delete takes its message ID. Either way both ends are left with no IKE SA.

A Delete sent in the message ID of a request the peer *did* get is answered from the peer's
cache with its answer to that request, and deletes nothing: these tests fail that way."""

from __future__ import annotations

from typing import Any

import pytest
from harness import Pair, site_config

from ikeagent.engine.ikev2.informational import DpdTask
from ikeagent.wire import v2 as w

EXCHANGES = ["child-rekey", "ike-rekey", "dpd"]


def established() -> Pair:
    p = Pair(site_config("a"), site_config("b", start=False))
    p.start()
    assert len(p.a.engine.list_sas()) == 1 and len(p.b.engine.list_sas()) == 1
    return p


def begin(p: Pair, what: str) -> None:
    if what == "child-rekey":
        p.a.engine.rekey("to-b", p.now, ike=False)
    elif what == "ike-rekey":
        p.a.engine.rekey("to-b", p.now, children=False)
    else:
        (sa,) = p.a.engine.sas.values()
        p.a.engine.queue_task(sa, DpdTask(), p.now)


def header(d: Any) -> w.Header:
    return w.Header.from_bytes(d.data)


def lose_answers(p: Pair, count: int) -> list[int]:
    """Drop b's next ``count`` answers; returns their message IDs as they go."""
    lost: list[int] = []

    def keep(src: str, d: Any) -> bool:
        h = header(d)
        if src == "b" and h.is_response and len(lost) < count:
            lost.append(h.message_id)
            return False
        return True

    p.filter = keep
    return lost


@pytest.mark.parametrize("what", EXCHANGES)
@pytest.mark.parametrize("how", ["terminate", "shutdown"])
def test_delete_waits_for_a_request_whose_answer_was_lost(what: str, how: str) -> None:
    p = established()
    lost = lose_answers(p, 1)
    begin(p, what)
    p.run()
    (sa,) = [s for s in p.a.engine.sas.values()]
    assert lost and sa.outstanding is not None  # b answered; a never heard
    if how == "terminate":
        p.a.engine.terminate("to-b", p.now)
    else:
        p.a.engine.shutdown(p.now)
    p.run()
    # no timer had to fire: the request went again at once, its answer came, then the Delete
    assert p.a.engine.list_sas() == [] and p.b.engine.list_sas() == []
    assert p.a.pairs() == [] and p.b.pairs() == []
    assert p.a.engine.stats()["retransmits"] == 1


@pytest.mark.parametrize("what", EXCHANGES)
def test_delete_takes_the_message_id_of_a_request_the_peer_never_got(what: str) -> None:
    p = established()
    (sa,) = p.a.engine.sas.values()
    request = sa.next_msgid
    held: list[int] = []

    def b_never_gets_it(src: str, d: Any) -> bool:
        # the request and its resending when the Delete comes; the Delete in its ID goes
        h = header(d)
        if src == "a" and not h.is_response and h.message_id == request and len(held) < 2:
            held.append(h.message_id)
            return False
        return True

    p.filter = b_never_gets_it
    begin(p, what)
    p.run()
    assert held == [request]
    p.a.engine.terminate("to-b", p.now)
    p.run()
    assert held == [request, request]
    assert len(p.a.engine.list_sas()) == 1  # the Delete waits one retransmit interval
    p.advance(p.a.engine.config.retransmit_timeout + 0.5)
    deletes = [
        header(d).message_id
        for src, d in p.wire
        if src == "a" and header(d).exchange == w.ExchangeType.INFORMATIONAL
    ]
    assert deletes[-1] == request
    assert p.a.engine.list_sas() == [] and p.b.engine.list_sas() == []


def test_an_ike_rekey_answered_while_its_sa_was_closing_takes_the_new_sa_along() -> None:
    p = established()
    lose_answers(p, 1)
    begin(p, "ike-rekey")
    p.run()
    assert len(p.b.engine.list_sas()) == 2  # b made the new IKE SA; a never heard
    p.a.engine.terminate("to-b", p.now)
    p.run()
    # the rekey's answer came (asked again) before the old SA's Delete: the new SA went too
    assert p.a.engine.list_sas() == [] and p.b.engine.list_sas() == []
    assert any("terminated" in d.reason for d in p.a.downs())


def test_the_dead_peer_still_ends_it() -> None:
    """Nothing answers at all: the Delete, in the request's message ID, times out and the SA
    goes (it does not wait behind a request forever)."""
    p = established()
    p.filter = lambda src, d: src != "a"
    begin(p, "child-rekey")
    p.run()
    p.a.engine.terminate("to-b", p.now)
    p.advance(200)
    assert p.a.engine.list_sas() == []
