"""No memory kept per call, without a GPU: 20,000 calls over changing
shapes (each shape new to the process), valid and invalid, through every
public function's checks, leave the interpreter's allocated blocks and the
library's caches where a few hundred calls left them.  A call that failed
must not keep its arguments, its repro line or its exception alive.  (Host
RSS, CuPy's pool and cuDNN descriptors under real calls need a GPU.)"""
import gc
import sys

import pytest

import cudnnconv
from cudnnconv import engine_registry, params
from conftest import FakeCudaArray

pytestmark = pytest.mark.skipif(cudnnconv.cuda_available(),
                                reason="a CUDA device is usable here: a valid call would run (on fake pointers)")

CALLS = 20000


def _call(i):
    """Call number i: a new shape every time (height 8 + i), one of four functions, one in four invalid."""
    h = 8 + i
    x, w = FakeCudaArray((1, 2, h, 5)), FakeCudaArray((3, 2, 3, 3))
    kind = i % 4
    try:
        if kind == 0:
            cudnnconv.conv(x, w, padding=1)
        elif kind == 1:
            cudnnconv.conv_backward_weight(x, (3, 2, 3, 3), FakeCudaArray((1, 3, h, 5)), padding=1)
        elif kind == 2:
            cudnnconv.conv_backward_input((1, 2, h, 5), w, FakeCudaArray((1, 3, h, 5)), padding=1)
        else:
            cudnnconv.conv(x, FakeCudaArray((3, 5, 3, 3)))          # channels do not match
    except (cudnnconv.CudaUnavailableError, ValueError):
        return
    raise AssertionError("call %d did not raise" % i)


def _blocks():
    gc.collect()
    return sys.getallocatedblocks()


def test_twenty_thousand_calls_keep_nothing():
    for i in range(500):                                # warm: first-use tables, interned strings, caches
        _call(i)
    before = _blocks()
    caches_before = {c.name: len(c) for c in engine_registry.caches()}
    for i in range(500, 500 + CALLS):
        _call(i)
    grown = _blocks() - before
    # A leak of one small object per call would be 20,000 blocks; the bound leaves room for the
    # interpreter's own bookkeeping (free lists, small dict resizes).
    assert grown < 2000, "%d blocks more after %d calls" % (grown, CALLS)
    assert {c.name: len(c) for c in engine_registry.caches()} == caches_before     # no search ran, nothing cached
    assert len(params.layouts._STRIDES_MEMO) <= params.layouts._STRIDES_MEMO_MAX
