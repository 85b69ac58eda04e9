"""Public systems: grid-operator envelopes and events, §14a dimming, open data."""
