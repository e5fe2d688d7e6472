"""A local Hugging Face Hub endpoint: git-style repos served over the Hub's HTTP API."""

from sandbox.hub.faults import Fault
from sandbox.hub.server import HubServer
from sandbox.hub.store import RepoStore

__all__ = ["Fault", "HubServer", "RepoStore"]
