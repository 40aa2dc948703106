"""Status snapshots of IKE SAs for listings (no key material)."""

from __future__ import annotations

from ikeagent.crypto.pki.names import dn_text
from ikeagent.crypto.suites import Algorithm, algorithm_name
from ikeagent.engine.events import ChildSaStatus, IkeSaStatus
from ikeagent.engine.ikev2.sa import IkeSa


def display_name(a: Algorithm | None) -> str | None:
    """An algorithm as strongSwan lists it (``AES_GCM_16_256``), else its keyword."""
    if a is None:
        return None
    try:
        return algorithm_name(a.type, a.id, a.key_bits)
    except KeyError:
        return a.keyword


def snapshot(sa: IkeSa) -> IkeSaStatus:
    ch = sa.chosen
    st = IkeSaStatus(
        name=sa.name,
        uid=sa.uid,
        version=2,
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
        encryption=display_name(ch.encr) if ch else "",
        integrity=display_name(ch.integ) if ch else None,
        prf=(display_name(ch.prf) or "") if ch else "",
        dh=(display_name(ch.dh) or "") if ch else "",
        nat_local=sa.nat_local,
        nat_remote=sa.nat_remote,
        established_at=sa.established_at,
        rekey_at=sa.rekey_at,
        expire_at=sa.expire_at,
        reauth_at=sa.reauth_at,
        local_auth=sa.local_auth,
        remote_auth=sa.remote_auth,
        remote_cert=dn_text(sa.peer_cert.subject) if sa.peer_cert is not None else None,
    )
    for c in sa.children:
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
                encryption=display_name(c.chosen.encr) or "",
                integrity=display_name(c.chosen.integ),
                dh=display_name(c.chosen.dh),
                esn=c.chosen.esn,
                local_ts=[str(t) for t in c.local_ts],
                remote_ts=[str(t) for t in c.remote_ts],
                installed_at=c.installed_at,
                rekey_at=c.rekey_at,
                expire_at=c.expire_at,
                inactivity=c.config.inactivity,
            )
        )
    return st
