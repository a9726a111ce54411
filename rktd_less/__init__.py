"""rktd-less: a systemd-native container engine in the spirit of CoreOS rkt."""

__version__ = "0.1.0"
APPC_VERSION = "0.8.11"
