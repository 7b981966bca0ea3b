"""Type stubs for cudnnconv.engines.graph_descriptors (Cython): an engine's internals, typed loosely (not public API)."""
from typing import Any

def __getattr__(name: str) -> Any: ...
