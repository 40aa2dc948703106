"""Status snapshots of ISAKMP SAs for listings, in the shape of the IKEv2 ones (no keys)."""

from __future__ import annotations

from typing import Any

from ikeagent.crypto.suites import Algorithm, lookup
from ikeagent.engine.events import ChildSaStatus, IkeSaStatus
from ikeagent.engine.ikev1.pubkey import is_signature
from ikeagent.engine.ikev1.sa import V1Sa
from ikeagent.engine.status import display_name


def _integrity(prf: Algorithm) -> str | None:
    """IKEv1's HASH_ALGORITHM protects messages as HMAC too: name it as integrity the way
    strongSwan lists it (HMAC_SHA2_256_128 for SHA2_256)."""
    try:
        return display_name(lookup(prf.keyword.removeprefix("prf")))
    except (KeyError, ValueError):
        return display_name(prf)


def _auth(sa: V1Sa) -> str | None:
    """One method authenticates both peers in IKEv1: "psk" or "pubkey", once established."""
    if sa.established_at is None or sa.transform is None:
        return None
    return "pubkey" if is_signature(sa.transform.auth_method) else "psk"


def _subject(cert: Any) -> str | None:
    if cert is None:
        return None
    from ikeagent.crypto.pki.names import dn_text

    return dn_text(cert.subject)


def snapshot(sa: V1Sa) -> IkeSaStatus:
    t = sa.transform
    auth = _auth(sa)
    st = IkeSaStatus(
        name=sa.name,
        uid=sa.uid,
        version=1,
        state=sa.state.value,
        role="initiator" if sa.initiator else "responder",
        local_addr=sa.local[0],
        local_port=sa.local[1],
        local_id=str(sa.local_id) if sa.local_id else sa.local[0],
        remote_addr=sa.remote[0],
        remote_port=sa.remote[1],
        remote_id=str(sa.remote_id) if sa.remote_id else sa.remote[0],
        spi_i=sa.spi_i,
        spi_r=sa.spi_r,
        encryption=(display_name(t.encr) or "") if t else "",
        # IKEv1's HASH_ALGORITHM is both its integrity and (as HMAC) its PRF
        integrity=_integrity(t.hash) if t else None,
        prf=(display_name(t.hash) or "") if t else "",
        dh=(display_name(t.dh) or "") if t else "",
        nat_local=sa.nat_local,
        nat_remote=sa.nat_remote,
        established_at=sa.established_at,
        rekey_at=sa.rekey_at,
        expire_at=sa.expire_at,
        mode=sa.mode,
        local_auth=auth,
        remote_auth=auth,
        remote_cert=_subject(sa.peer_cert),
    )
    for c in sa.children:
        e = c.esp
        st.children.append(
            ChildSaStatus(
                name=c.name,
                reqid=c.reqid,
                state=c.state.value,
                mode="TUNNEL",
                protocol="ESP",
                encap=c.encap,
                spi_in=c.spi_in,
                spi_out=c.spi_out,
                encryption=display_name(e.encr) or "",
                integrity=display_name(e.integ),
                dh=display_name(e.dh),
                esn=e.esn,
                local_ts=[str(c.local_ts)],
                remote_ts=[str(c.remote_ts)],
                installed_at=c.installed_at,
                rekey_at=c.rekey_at,
                expire_at=c.expire_at,
                inactivity=c.config.inactivity,
            )
        )
    return st
