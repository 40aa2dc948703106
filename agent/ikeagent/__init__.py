"""ikeagent: the IKE agent of the ikelab.ipsec collection."""

__version__ = "0.1.0"
