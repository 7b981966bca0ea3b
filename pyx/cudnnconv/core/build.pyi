"""Type stubs for cudnnconv.core.build (Cython): compile-time options and cuDNN versions."""
from typing import Any, Dict

INDEX_LIMIT: int
LEGACY_API: bool
GRAPH_API: bool
DEBUG: bool
COMPILED_CUDNN_VERSION: int

def runtime_cudnn_version() -> int: ...
def compile_options() -> Dict[str, Any]: ...
