"""``python -m veilnet`` runs the CLI (used by ``veilnet devnet up`` to start its services)."""

from veilnet.cli import main

main()
