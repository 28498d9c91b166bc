"""veilnet: a Bittensor inference subnet — miners, validators, gateway, confidential routing, devnet chain."""

__version__ = "0.1.0"
__all__ = ["__version__"]
