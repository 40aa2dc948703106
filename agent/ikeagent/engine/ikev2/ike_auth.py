"""IKE_AUTH (RFC 7296 1.2, 2.15) with pre-shared keys or certificates (RFC 7427, RFC 4754),
per side, both roles, with the first Child SA."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from ikeagent.config.identity import identity_of_address
from ikeagent.config.model import AuthMethod, ChildConfig, ConnectionConfig, Identity
from ikeagent.crypto.auth import psk_auth, signed_octets
from ikeagent.crypto.pki.errors import PkiError
from ikeagent.crypto.pki.names import describe
from ikeagent.engine.ikev2 import children, proposals, pubkey, selectors
from ikeagent.engine.ikev2.child_create import error_notify, notify
from ikeagent.engine.ikev2.child_create import respond as child_respond
from ikeagent.engine.ikev2.identities import identity_from_wire, matches
from ikeagent.engine.ikev2.sa import IkeSa
from ikeagent.engine.ikev2.state import IkeState
from ikeagent.wire import v2 as w

if TYPE_CHECKING:
    from ikeagent.engine.core import Engine

PSK = w.AuthMethod.SHARED_KEY_MESSAGE_INTEGRITY_CODE
PUBKEY = AuthMethod.PUBKEY


def local_identity(conn: ConnectionConfig, sa: IkeSa) -> Identity:
    return pubkey.default_identity(conn.local) or identity_of_address(sa.local[0])


def _octets(sa: IkeSa, *, initiator_side: bool, id_body: bytes) -> bytes:
    assert sa.keys is not None
    if initiator_side:
        return signed_octets(sa.init_request, sa.nr, sa.prf_id, sa.keys.sk_pi, id_body)
    return signed_octets(sa.init_response, sa.ni, sa.prf_id, sa.keys.sk_pr, id_body)


def _auth_data(
    eng: Engine, sa: IkeSa, psk: bytes, *, initiator_side: bool, id_body: bytes
) -> bytes:
    return psk_auth(sa.prf_id, psk, _octets(sa, initiator_side=initiator_side, id_body=id_body))


def _wall_time(eng: Engine) -> float | None:
    try:
        return eng.wall_time()
    except RuntimeError:
        return None


def _verify_pubkey(
    eng: Engine,
    sa: IkeSa,
    conn: ConnectionConfig,
    payloads: list[w.Payload],
    remote_id: Identity,
    auth: w.Authentication,
    *,
    initiator_side: bool,
    id_body: bytes,
) -> str | None:
    """Check the peer's certificate and signature AUTH; the failure reason, or None (and the
    SA remembers the certificate)."""
    wall = _wall_time(eng)
    if wall is None:
        return "no wall clock to check certificate dates with"
    octets = _octets(sa, initiator_side=initiator_side, id_body=id_body)
    try:
        cert = pubkey.verify(conn, payloads, remote_id, auth, octets, wall)
    except PkiError as e:
        return str(e)
    sa.peer_cert = cert
    sa.remote_auth = PUBKEY.value
    eng.log.info(
        "%s: authenticated with certificate %s (%s)",
        sa.peer_label(),
        describe(cert),
        pubkey.method_name(auth.method),
    )
    return None


def _sign(eng: Engine, sa: IkeSa, conn: ConnectionConfig, octets: bytes) -> w.Authentication | str:
    """Our signature AUTH payload, or why we cannot make one."""
    try:
        auth = pubkey.sign(conn, sa, octets)
    except PkiError as e:
        return f"cannot authenticate with our certificate: {e}"
    sa.local_auth = PUBKEY.value
    return auth


class IkeAuthTask:
    exchange = w.ExchangeType.IKE_AUTH

    def __init__(self, first_child: ChildConfig | None) -> None:
        self.child = first_child
        self.spi_in = 0

    def describe(self) -> str:
        return "IKE_AUTH"

    def build(self, eng: Engine, sa: IkeSa, now: float) -> list[w.Payload] | None:
        conn = sa.conn
        assert conn is not None
        sa.local_id = local_identity(conn, sa)
        psk = None
        if conn.local.auth is not PUBKEY:
            psk = eng.config.find_psk(sa.local_id, conn.remote.id)
            if psk is None:
                eng.fail_ike(
                    sa,
                    f"no pre-shared key for '{sa.local_id}' - '{conn.remote.id or '%any'}'",
                    now,
                )
                return None
        idi = w.IdentificationInitiator(w.IdType(sa.local_id.id_type), sa.local_id.data)
        payloads: list[w.Payload] = [idi]
        if psk is None:
            payloads.extend(pubkey.cert_payloads(conn))
        if eng.is_first_contact(sa):
            payloads.append(notify(w.NotifyType.INITIAL_CONTACT))
        if conn.remote.auth is PUBKEY and (req := pubkey.certreq(conn.remote.cacerts)):
            payloads.append(req)
        if conn.remote.id is not None:
            payloads.append(
                w.IdentificationResponder(w.IdType(conn.remote.id.id_type), conn.remote.id.data)
            )
        if psk is None:
            signed = _sign(eng, sa, conn, _octets(sa, initiator_side=True, id_body=idi.id_body()))
            if isinstance(signed, str):
                eng.fail_ike(sa, signed, now, notify_peer=False)
                return None
            payloads.append(signed)
        else:
            sa.local_auth = AuthMethod.PSK.value
            payloads.append(
                w.Authentication(
                    PSK, _auth_data(eng, sa, psk, initiator_side=True, id_body=idi.id_body())
                )
            )
        if self.child is not None:
            if not self.spi_in:
                self.spi_in = eng.new_spi_in()
            payloads.append(
                w.SecurityAssociation(
                    proposals.to_wire(
                        self.child.esp_proposals,
                        w.ProtocolId.ESP,
                        self.spi_in.to_bytes(4, "big"),
                        strip_dh=True,
                    )
                )
            )
            tsi, tsr = selectors.with_packet(
                selectors.from_config(self.child.local_ts),
                selectors.from_config(self.child.remote_ts),
                sa.packet_hints.get(self.child.name),
            )
            payloads.append(w.TrafficSelectorsInitiator(tuple(t.to_wire() for t in tsi)))
            payloads.append(w.TrafficSelectorsResponder(tuple(t.to_wire() for t in tsr)))
        payloads.append(notify(w.NotifyType.ESP_TFC_PADDING_NOT_SUPPORTED))
        return payloads

    def on_response(self, eng: Engine, sa: IkeSa, payloads: list[w.Payload], now: float) -> None:
        conn = sa.conn
        assert conn is not None
        auth_failed = next(
            (
                p
                for p in payloads
                if isinstance(p, w.Notify) and p.notify_type == w.NotifyType.AUTHENTICATION_FAILED
            ),
            None,
        )
        if auth_failed is not None:
            eng.fail_ike(sa, "peer answered AUTHENTICATION_FAILED", now, notify_peer=False)
            return
        idr = w.payload(payloads, w.IdentificationResponder)
        auth = w.payload(payloads, w.Authentication)
        if idr is None or auth is None:
            err = error_notify(payloads)
            reason = (
                f"peer answered {w.NotifyType(int(err.notify_type)).name}"
                if err
                else "IKE_AUTH response lacks IDr or AUTH"
            )
            eng.fail_ike(sa, reason, now, notify_peer=False)
            return
        remote_id = identity_from_wire(idr.id_type, idr.data)
        if not matches(conn.remote.id, remote_id):
            eng.fail_ike(sa, f"peer identity '{remote_id}' does not match '{conn.remote.id}'", now)
            return
        sa.remote_id = remote_id
        if conn.remote.auth is PUBKEY or pubkey.method_class(auth.method) is PUBKEY:
            why = _verify_pubkey(
                eng,
                sa,
                conn,
                payloads,
                remote_id,
                auth,
                initiator_side=False,
                id_body=idr.id_body(),
            )
            if why is not None:
                eng.fail_ike(sa, f"AUTHENTICATION_FAILED: {why}", now)
                return
            self._established(eng, sa, payloads, now)
            return
        psk = eng.config.find_psk(sa.local_id, remote_id)
        if psk is None or int(auth.method) != PSK:
            eng.fail_ike(
                sa,
                f"no pre-shared key for '{sa.local_id}' - '{remote_id}' or wrong AUTH method",
                now,
            )
            return
        expected = _auth_data(eng, sa, psk, initiator_side=False, id_body=idr.id_body())
        if not hmac.compare_digest(expected, auth.data):
            eng.fail_ike(
                sa, f"AUTHENTICATION_FAILED: pre-shared key of '{remote_id}' does not verify", now
            )
            return
        sa.remote_auth = AuthMethod.PSK.value
        self._established(eng, sa, payloads, now)

    def _established(self, eng: Engine, sa: IkeSa, payloads: list[w.Payload], now: float) -> None:
        eng.ike_established(sa, now)
        if self.child is not None:
            self._child(eng, sa, payloads, now)
        eng.start_pending_children(sa, now)

    def _child(self, eng: Engine, sa: IkeSa, payloads: list[w.Payload], now: float) -> None:
        cfg = self.child
        assert cfg is not None
        err = error_notify(payloads)
        sa_p = w.payload(payloads, w.SecurityAssociation)
        tsi = w.payload(payloads, w.TrafficSelectorsInitiator)
        tsr = w.payload(payloads, w.TrafficSelectorsResponder)
        if err is not None or sa_p is None or tsi is None or tsr is None:
            why = w.NotifyType(int(err.notify_type)).name if err else "no SA/TS payloads"
            eng.log.warning("%s: CHILD_SA %s not established: %s", sa.peer_label(), cfg.name, why)
            eng.release_spi_in(self.spi_in)
            return
        chosen = proposals.accept_response(
            cfg.esp_proposals, sa_p.proposals, w.ProtocolId.ESP, ignore_dh=True
        )
        l_ts, r_ts = selectors.from_wire(tsi.selectors), selectors.from_wire(tsr.selectors)
        if (
            chosen is None
            or len(chosen.spi) != 4
            or not selectors.is_subset(l_ts, selectors.from_config(cfg.local_ts))
            or not selectors.is_subset(r_ts, selectors.from_config(cfg.remote_ts))
        ):
            eng.log.warning(
                "%s: CHILD_SA %s: peer's choice is not within our offer", sa.peer_label(), cfg.name
            )
            eng.release_spi_in(self.spi_in)
            return
        children.install(
            eng,
            sa,
            cfg,
            chosen,
            we_initiated=True,
            spi_in=self.spi_in,
            spi_out=int.from_bytes(chosen.spi, "big"),
            ni=sa.ni,
            nr=sa.nr,
            shared=None,
            local_ts=l_ts,
            remote_ts=r_ts,
            reqid=None,
            now=now,
        )


def respond(eng: Engine, sa: IkeSa, payloads: list[w.Payload], now: float) -> list[w.Payload]:
    """The responder's IKE_AUTH. On failure the response carries AUTHENTICATION_FAILED and the
    IKE SA is destroyed once it went out."""
    if sa.state is not IkeState.CONNECTING:
        return [notify(w.NotifyType.INVALID_SYNTAX)]
    idi = w.payload(payloads, w.IdentificationInitiator)
    auth = w.payload(payloads, w.Authentication)
    if idi is None or auth is None:
        eng.fail_ike(
            sa, "IKE_AUTH request lacks IDi or AUTH", now, notify_peer=False, after_response=True
        )
        return [notify(w.NotifyType.AUTHENTICATION_FAILED)]
    remote_id = identity_from_wire(idi.id_type, idi.data)
    idr = w.payload(payloads, w.IdentificationResponder)
    wanted_local = identity_from_wire(idr.id_type, idr.data) if idr else None
    conn = None
    wrong_method: ConnectionConfig | None = None  # matched but for the AUTH method
    for c in sa.candidates:
        if not matches(c.remote.id, remote_id):
            continue
        if wanted_local is not None and not matches(local_identity(c, sa), wanted_local):
            continue
        if pubkey.method_class(auth.method) is not c.remote.auth:
            wrong_method = wrong_method or c
            continue
        if (
            c is not sa.conn
            and sa.init_offer
            and proposals.select(c.proposals, sa.init_offer, w.ProtocolId.IKE) != sa.chosen
        ):
            continue
        conn = c
        break
    sa.remote_id = remote_id
    if conn is None:
        reason = f"no connection matches peer identity '{remote_id}'"
        if wrong_method is not None:
            try:
                pubkey.check_method(wrong_method, auth)
            except PkiError as e:
                reason = f"AUTHENTICATION_FAILED: {e} (connection '{wrong_method.name}')"
        eng.fail_ike(sa, reason, now, notify_peer=False, after_response=True)
        return [notify(w.NotifyType.AUTHENTICATION_FAILED)]
    sa.conn = conn
    sa.local_id = local_identity(conn, sa)
    if conn.local.auth is PUBKEY or conn.remote.auth is PUBKEY:
        return _respond_pubkey(eng, sa, conn, payloads, idi, auth, now)
    psk = eng.config.find_psk(sa.local_id, remote_id)
    if psk is None or int(auth.method) != PSK:
        eng.fail_ike(
            sa,
            f"no pre-shared key for '{sa.local_id}' - '{remote_id}' or AUTH method {int(auth.method)} not PSK",
            now,
            notify_peer=False,
            after_response=True,
        )
        return [notify(w.NotifyType.AUTHENTICATION_FAILED)]
    expected = _auth_data(eng, sa, psk, initiator_side=True, id_body=idi.id_body())
    if not hmac.compare_digest(expected, auth.data):
        eng.fail_ike(
            sa,
            f"AUTHENTICATION_FAILED: pre-shared key of '{remote_id}' does not verify",
            now,
            notify_peer=False,
            after_response=True,
        )
        return [notify(w.NotifyType.AUTHENTICATION_FAILED)]
    sa.local_auth = sa.remote_auth = AuthMethod.PSK.value
    if any(
        isinstance(p, w.Notify) and p.notify_type == w.NotifyType.INITIAL_CONTACT for p in payloads
    ):
        eng.initial_contact(sa, now)
    my_idr = w.IdentificationResponder(w.IdType(sa.local_id.id_type), sa.local_id.data)
    out: list[w.Payload] = [
        my_idr,
        w.Authentication(
            PSK, _auth_data(eng, sa, psk, initiator_side=False, id_body=my_idr.id_body())
        ),
    ]
    eng.ike_established(sa, now)
    out.extend(child_respond(eng, sa, payloads, now, in_auth=True))
    return out


def _respond_pubkey(
    eng: Engine,
    sa: IkeSa,
    conn: ConnectionConfig,
    payloads: list[w.Payload],
    idi: w.IdentificationInitiator,
    auth: w.Authentication,
    now: float,
) -> list[w.Payload]:
    """The responder's IKE_AUTH when either side uses certificates (the other may use a PSK)."""
    assert sa.local_id is not None and sa.remote_id is not None

    def failed(reason: str) -> list[w.Payload]:
        eng.fail_ike(sa, reason, now, notify_peer=False, after_response=True)
        return [notify(w.NotifyType.AUTHENTICATION_FAILED)]

    psk = None
    if conn.remote.auth is not PUBKEY or conn.local.auth is not PUBKEY:
        psk = eng.config.find_psk(sa.local_id, sa.remote_id)
    if conn.remote.auth is PUBKEY:
        why = _verify_pubkey(
            eng, sa, conn, payloads, sa.remote_id, auth, initiator_side=True, id_body=idi.id_body()
        )
        if why is not None:
            return failed(f"AUTHENTICATION_FAILED: {why}")
    else:
        if psk is None:
            return failed(f"no pre-shared key for '{sa.local_id}' - '{sa.remote_id}'")
        expected = _auth_data(eng, sa, psk, initiator_side=True, id_body=idi.id_body())
        if not hmac.compare_digest(expected, auth.data):
            return failed(
                f"AUTHENTICATION_FAILED: pre-shared key of '{sa.remote_id}' does not verify"
            )
        sa.remote_auth = AuthMethod.PSK.value
    my_idr = w.IdentificationResponder(w.IdType(sa.local_id.id_type), sa.local_id.data)
    octets = _octets(sa, initiator_side=False, id_body=my_idr.id_body())
    out: list[w.Payload] = [my_idr]
    if conn.local.auth is PUBKEY:
        signed = _sign(eng, sa, conn, octets)
        if isinstance(signed, str):
            return failed(f"AUTHENTICATION_FAILED: {signed}")
        out.extend(pubkey.cert_payloads(conn))
        out.append(signed)
    else:
        if psk is None:
            return failed(f"no pre-shared key for '{sa.local_id}' - '{sa.remote_id}'")
        out.append(w.Authentication(PSK, psk_auth(sa.prf_id, psk, octets)))
        sa.local_auth = AuthMethod.PSK.value
    if any(
        isinstance(p, w.Notify) and p.notify_type == w.NotifyType.INITIAL_CONTACT for p in payloads
    ):
        eng.initial_contact(sa, now)
    eng.ike_established(sa, now)
    out.extend(child_respond(eng, sa, payloads, now, in_auth=True))
    return out
