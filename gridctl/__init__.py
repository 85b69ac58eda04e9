"""gridctl: feeder-safe energy sharing for community microgrids."""

__version__ = "0.1.0"
