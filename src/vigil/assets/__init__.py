"""What is there to protect: the inventory (hosts, software, cloud, data, identities), the
importers that fill it, and the access graph between its nodes."""

from vigil.assets.model import EDGE_KINDS, NODE_KINDS, Edge, Inventory, Node

__all__ = ["EDGE_KINDS", "NODE_KINDS", "Edge", "Inventory", "Node"]
