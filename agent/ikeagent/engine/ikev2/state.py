"""States of IKE and Child SAs, with their legal transitions (illegal ones raise)."""

from __future__ import annotations

from enum import Enum


class IllegalTransition(RuntimeError):
    pass


class IkeState(Enum):
    CREATED = "CREATED"
    CONNECTING = "CONNECTING"  # IKE_SA_INIT sent or answered, IKE_AUTH pending
    ESTABLISHED = "ESTABLISHED"
    REKEYING = "REKEYING"  # an IKE rekey of ours is in flight
    REKEYED = "REKEYED"  # replaced by a new IKE SA, waiting for the delete
    DELETING = "DELETING"
    DESTROYED = "DESTROYED"


_IKE = {
    IkeState.CREATED: {IkeState.CONNECTING, IkeState.ESTABLISHED, IkeState.DESTROYED},
    IkeState.CONNECTING: {IkeState.ESTABLISHED, IkeState.DELETING, IkeState.DESTROYED},
    IkeState.ESTABLISHED: {
        IkeState.REKEYING,
        IkeState.REKEYED,
        IkeState.DELETING,
        IkeState.DESTROYED,
    },
    IkeState.REKEYING: {
        IkeState.ESTABLISHED,
        IkeState.REKEYED,
        IkeState.DELETING,
        IkeState.DESTROYED,
    },
    IkeState.REKEYED: {IkeState.DELETING, IkeState.DESTROYED},
    IkeState.DELETING: {IkeState.DESTROYED},
    IkeState.DESTROYED: set(),
}


class ChildState(Enum):
    CREATING = "CREATING"
    INSTALLED = "INSTALLED"
    REKEYING = "REKEYING"
    REKEYED = "REKEYED"  # replaced; kept until its delete completes
    DELETING = "DELETING"
    DESTROYED = "DESTROYED"


_CHILD = {
    ChildState.CREATING: {ChildState.INSTALLED, ChildState.DESTROYED},
    ChildState.INSTALLED: {
        ChildState.REKEYING,
        ChildState.REKEYED,
        ChildState.DELETING,
        ChildState.DESTROYED,
    },
    ChildState.REKEYING: {
        ChildState.INSTALLED,
        ChildState.REKEYED,
        ChildState.DELETING,
        ChildState.DESTROYED,
    },
    ChildState.REKEYED: {ChildState.DELETING, ChildState.DESTROYED},
    ChildState.DELETING: {ChildState.DESTROYED},
    ChildState.DESTROYED: set(),
}


def check_ike(old: IkeState, new: IkeState) -> IkeState:
    if old is not new and new not in _IKE[old]:
        raise IllegalTransition(f"IKE SA {old.value} -> {new.value}")
    return new


def check_child(old: ChildState, new: ChildState) -> ChildState:
    if old is not new and new not in _CHILD[old]:
        raise IllegalTransition(f"Child SA {old.value} -> {new.value}")
    return new
