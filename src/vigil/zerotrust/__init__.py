"""Zero Trust: the policy decision point (identity, device posture, context, live risk),
sessions verified continuously and revoked, just-in-time access, and micro-segmentation
compiled to nftables and learned from observed flows."""
