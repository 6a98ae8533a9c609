"""The hub: the platform side of the protocol, embeddable in-process."""

from giskard.hub.server import Hub

__all__ = ["Hub"]
