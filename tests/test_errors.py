"""CuDNNError and CuDNNOutOfMemoryError: names, context, pickling."""
import pickle

import pytest

import cudnnconv
from cudnnconv.core import status


def test_error_fields_and_text():
    e = cudnnconv.CuDNNError(2000, "bad dims", "x: TensorDescriptor(...)")
    assert isinstance(e, RuntimeError)
    assert e.status == 2000
    assert e.name == "CUDNN_STATUS_BAD_PARAM"
    assert e.message == "bad dims"
    assert e.context == "x: TensorDescriptor(...)"
    assert str(e) == "CUDNN_STATUS_BAD_PARAM: bad dims\nx: TensorDescriptor(...)"
    assert str(cudnnconv.CuDNNError(3000)) == "CUDNN_STATUS_NOT_SUPPORTED"


@pytest.mark.parametrize("cls", [cudnnconv.CuDNNError, cudnnconv.CuDNNOutOfMemoryError])
@pytest.mark.parametrize("proto", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_round_trip(cls, proto):
    e = cls(4004 if cls is cudnnconv.CuDNNOutOfMemoryError else 3000, "msg with 'quotes'",
            "repro: import cupy, cudnnconv; cudnnconv.conv(...)")
    back = pickle.loads(pickle.dumps(e, protocol=proto))
    assert type(back) is cls
    assert (back.status, back.name, back.message, back.context) == (e.status, e.name, e.message, e.context)
    assert str(back) == str(e)
    assert back.args == e.args


def test_pickle_after_add_context_keeps_the_context():
    e = cudnnconv.CuDNNError(2000, "m").add_context("first").add_context("second")
    back = pickle.loads(pickle.dumps(e))
    assert back.context == "first\nsecond"
    assert str(back) == "CUDNN_STATUS_BAD_PARAM: m\nfirst\nsecond"


def test_add_context():
    e = cudnnconv.CuDNNError(2000, "m")
    assert e.context == ""
    same = e.add_context("ctx1")
    assert same is e
    assert e.context == "ctx1"
    e.add_context("ctx2")
    assert e.context == "ctx1\nctx2"
    assert str(e) == "CUDNN_STATUS_BAD_PARAM: m\nctx1\nctx2"
    assert e.args == (str(e),)
    with pytest.raises(cudnnconv.CuDNNError, match="ctx2"):
        raise e


def test_out_of_memory_error_is_both():
    e = cudnnconv.CuDNNOutOfMemoryError(4004, "workspace")
    assert isinstance(e, MemoryError)
    assert isinstance(e, cudnnconv.CuDNNError)
    assert isinstance(e, RuntimeError)
    assert e.name.startswith("CUDNN_STATUS_INTERNAL_ERROR")
    with pytest.raises(MemoryError):
        raise e
    assert not isinstance(cudnnconv.CuDNNError(4004), MemoryError)


def test_status_names():
    assert status.status_name(0) == "CUDNN_STATUS_SUCCESS"
    assert status.status_name(2000) == "CUDNN_STATUS_BAD_PARAM"
    assert status.status_name(3000) == "CUDNN_STATUS_NOT_SUPPORTED"
    assert status.status_name(4004).startswith("CUDNN_STATUS_INTERNAL_ERROR")
    odd = status.status_name(123456)        # cuDNN's own word for a code it does not know
    assert odd.startswith("CUDNN_") and odd != "CUDNN_STATUS_SUCCESS"
    assert cudnnconv.CuDNNError(123456).status == 123456


def test_oom_statuses_map_to_the_oom_class():
    assert status.is_oom_status(4004)
    assert not status.is_oom_status(2000)
    assert not status.is_oom_status(0)
    with pytest.raises(cudnnconv.CuDNNOutOfMemoryError):
        status.raise_status(4004, "ctx")
    with pytest.raises(cudnnconv.CuDNNError) as info:
        status.raise_status(2000, "ctx")
    assert not isinstance(info.value, MemoryError)
    assert info.value.context == "ctx"
