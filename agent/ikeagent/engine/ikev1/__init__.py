"""IKEv1 (RFC 2408/2409): Main, Aggressive and Quick Mode, Informational exchanges, DPD
(RFC 3706) and NAT-T (RFC 3947/3948), as a sans-I/O engine beside the IKEv2 one."""
