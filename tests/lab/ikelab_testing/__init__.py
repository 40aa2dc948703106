"""Lab and test library of ikelab.ipsec: network namespaces, strongSwan's charon as a peer,
the project's agent as a peer, and packet captures.

Modules: ``netns`` (Lab, Namespace, Topology), ``charon`` (Charon, Connection, Child, Secret),
``vici`` (a small VICI client), ``agent`` (Agent), ``peers`` (Tunnel, charon_peer, agent_peer),
``capture`` (Capture, CaptureSummary), ``checks`` (the three facts that prove a tunnel).
"""
