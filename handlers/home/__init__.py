"""The home tab: what is open and what is coming, published when someone opens it."""
