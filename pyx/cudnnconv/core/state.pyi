"""Type stubs for cudnnconv.core.state (Cython): the per-thread state and the plan generation."""
from typing import Any, Optional

class ThreadState:
    options: Any
    memo: dict
    last: Any
    last_plan: Any
    explain: Optional[Any]

def state() -> ThreadState: ...
def current_generation() -> int: ...
def invalidate() -> None: ...
def clear_memos() -> None: ...
