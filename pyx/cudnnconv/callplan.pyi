"""Type stubs for cudnnconv.callplan (Cython): the call plan and the typed call path."""
from typing import Any, Callable, Optional, Tuple

class FnSpec:
    """What differs between the public functions, for the shared driver."""
    name: str
    op: str
    n_arrays: int
    out_role: int
    bindable: bool
    redo: Callable[..., Any]
    def __init__(self, name: str, op: str, roles: Tuple[int, ...], out_role: int, bindable: bool,
                 redo: Callable[..., Any]) -> None: ...
    @property
    def roles(self) -> Tuple[int, ...]: ...

class Miss:
    """What the typed entry hands the full path when it does not run a call."""
    sig: Any
    plan: Optional["CallPlan"]
    opts: Any
    scalars: Any
    gen: int

class CallPlan:
    """A call signature's plan: made by a call's first pass, bound to the choice that ran.

    Returned by ``cudnnconv.plan()``; call it with the function's arrays (positional) and ``out=``.
    """
    fn: str
    device: int
    layout: str
    shape: Tuple[int, ...]
    dtype: Any
    out_strides: Optional[Tuple[int, ...]]
    @property
    def bound(self) -> bool: ...
    @property
    def engine(self) -> Optional[str]: ...
    @property
    def choice(self) -> Optional[dict]: ...
    @property
    def workspace(self) -> int: ...
    def __call__(self, *arrays: Any, out: Any = ...) -> Any: ...
    def accepts(self, *arrays: Any, out: Any = ...) -> bool: ...
    def describe(self) -> str: ...

def call(spec: FnSpec, arrays: tuple, out: Any, scalars: Any, flags: tuple) -> Any: ...
def memoized(memo: Optional[dict] = ...) -> list: ...
def rel_span(a: Any) -> Any: ...
def has_layout(shape: tuple, strides: tuple, itemsize: int, channels_last: bool) -> bool: ...
def conv_plan(x: Any, w: Any, b: Any, stride: Any, padding: Any, dilation: Any, groups: Any, out: Any,
              opts: Any) -> Optional[CallPlan]: ...
def __getattr__(name: str) -> Any: ...
