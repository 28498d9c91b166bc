"""The one-command local subnet (``veilnet devnet up``) and the embedded devnet chain (``devnet.chain``)."""
