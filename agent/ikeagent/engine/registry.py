"""Mixed into the Engine: the identifiers it hands out (uids, reqids, rekey chains, install
order, SPIs), its table of IKEv2 SAs, and look-ups of SA pairs across both IKE versions (the
IKEv1 engine takes its identifiers from here too, so a reqid or a rekey chain means the same
pair of policies in either version)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ikeagent.engine.ikev2.sa import IkeSa
from ikeagent.engine.ikev2.state import ChildState

if TYPE_CHECKING:
    from ikeagent.engine.core import Engine


class Registry:
    # ---- identifiers -------------------------------------------------------------------------

    def new_uid(self: Engine) -> int:
        self._uid += 1
        return self._uid

    def new_reqid(self: Engine) -> int:
        self._reqid += 1
        return self._reqid

    def policy_reqid(self: Engine, policy: tuple) -> int:
        """The reqid for a new Child SA whose policy (connection, child, selectors, peer) is
        ``policy``: the one a live Child SA with the same policy holds (as strongSwan shares
        reqids between identical policies), else a new one."""
        reqid = self._reqid_of.get(policy)
        if reqid is None:
            reqid = self.new_reqid()
            self._reqid_of[policy] = reqid
            self._policy_of[reqid] = policy
        return reqid

    def next_install(self: Engine) -> int:
        """A number that grows with every pair sent to the data plane (its install order)."""
        self._installs += 1
        return self._installs

    def new_lineage(self: Engine) -> int:
        self._lineage += 1
        return self._lineage

    def lineage_for(self: Engine, reqid: int) -> int:
        """The rekey chain of a new pair that is not a rekey: that of a live pair of the same
        reqid (the policy), if any (a reauthentication's, a duplicate's: the tunnel never went
        down, and the old pair's going is no CHILD_SA down), else a new one."""
        for sa in [*self.sas.values(), *self.v1.sas.values()]:
            for c in sa.children:
                if c.reqid == reqid and c.state is not ChildState.DESTROYED:
                    return int(c.lineage)
        return self.new_lineage()

    def release_reqid(self: Engine, reqid: int) -> None:
        """No Child SA holds ``reqid`` any more: its policy gets a new one next time."""
        policy = self._policy_of.pop(reqid, None)
        if policy is not None and self._reqid_of.get(policy) == reqid:
            del self._reqid_of[policy]

    def reqid_in_use(self: Engine, reqid: int) -> bool:
        """Whether a Child SA (either IKE version) still holds an SA pair under ``reqid``."""
        return any(
            c.reqid == reqid and c.state is not ChildState.DESTROYED
            for sa in [*self.sas.values(), *self.v1.sas.values()]
            for c in sa.children
        )

    def lineage_alive(self: Engine, lineage: int) -> bool:
        """Whether a pair of this rekey chain (either IKE version) is still there."""
        return any(
            c.lineage == lineage and c.state is not ChildState.DESTROYED
            for sa in [*self.sas.values(), *self.v1.sas.values()]
            for c in sa.children
        )

    def closes_lineage(self: Engine, child: Any, sa: Any = None) -> bool:
        """Whether removing ``child`` (with all of IKE SA ``sa``, if given) ends its rekey
        chain: no other live pair of it is left elsewhere."""
        return not any(
            c is not child and (sa is None or s is not sa)
            for s, c in self.lineage_members(child.lineage)
        )

    def lineage_members(self: Engine, lineage: int) -> list[tuple[Any, Any]]:
        """(IKE SA, child) of every live pair of this rekey chain, either IKE version."""
        return [
            (sa, c)
            for sa in [*self.sas.values(), *self.v1.sas.values()]
            for c in sa.children
            if c.lineage == lineage and c.state is not ChildState.DESTROYED
        ]

    def find_child(self: Engine, reqid: int, spi_in: int) -> tuple[Any, Any] | None:
        """(IKE SA, child) of the pair with this reqid and inbound SPI, either IKE version."""
        for sa in [*self.sas.values(), *self.v1.sas.values()]:
            child = sa.child_by_spi_in(spi_in)
            if child is not None and child.reqid == reqid:
                return sa, child
        return None

    # ---- SPIs --------------------------------------------------------------------------------

    def new_spi_in(self: Engine) -> int:
        while True:
            spi = int.from_bytes(self.rng.randbytes(4), "big")
            if spi >= 0x100 and spi not in self._spis_in:
                self._spis_in.add(spi)
                return spi

    def release_spi_in(self: Engine, spi: int) -> None:
        self._spis_in.discard(spi)

    def new_ike_spi(self: Engine) -> int:
        while True:
            spi = int.from_bytes(self.rng.randbytes(8), "big")
            if spi and spi not in self._ike_spis:
                self._ike_spis.add(spi)
                return spi

    def forget_ike_spi(self: Engine, spi: int) -> None:
        if spi not in self.sas:
            self._ike_spis.discard(spi)

    # ---- IKE SA table ------------------------------------------------------------------------

    def register(self: Engine, sa: IkeSa) -> None:
        self.sas[sa.our_spi] = sa
        self._by_uid[sa.uid] = sa

    def unregister(self: Engine, sa: IkeSa) -> None:
        if self.sas.get(sa.our_spi) is sa:
            del self.sas[sa.our_spi]
        self._ike_spis.discard(sa.our_spi)
        self._by_uid.pop(sa.uid, None)
        self.forget_half_open(sa)
        if self._recent_init.get((sa.spi_i, sa.remote[0])) is sa:
            del self._recent_init[(sa.spi_i, sa.remote[0])]

    def forget_half_open(self: Engine, sa: IkeSa) -> None:
        """The SA is no longer half-open (established or gone): it stops counting towards
        the COOKIE threshold. Keyed by where its IKE_SA_INIT came from, since ``sa.remote``
        may have floated to the NAT-T port since."""
        key = sa.half_open_key or (sa.spi_i, sa.remote[0], sa.remote[1])
        if self.half_open.get(key) is sa:
            del self.half_open[key]

    def set_spi_r(self: Engine, sa: IkeSa, spi_r: int) -> None:
        sa.spi_r = spi_r
