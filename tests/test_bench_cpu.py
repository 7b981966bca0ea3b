"""CPU tests of the benchmark harness (bench/): spec parser, suite layers
(through cudnnconv.params and cuDNN's host-side descriptors), the JSON
result schema, the tables and chart from synthetic numbers, and
--compare-results.  No GPU needed."""
import json
import math
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench import report, roofline, runner, spec, suites  # noqa: E402
from bench.__main__ import main as bench_main, result_name  # noqa: E402
from cudnnconv import params  # noqa: E402


# ---------------------------------------------------------------------------
# spec parser
# ---------------------------------------------------------------------------

def test_parse_2d_spec_from_the_issue():
    layer = spec.parse_spec("N=32,C=64,H=56,W=56,K=64,R=3,S=3,pad=1,stride=1,groups=1")
    assert layer.input_shape() == (32, 64, 56, 56)
    assert layer.weight_shape() == (64, 64, 3, 3)
    assert layer.output_shape() == (32, 64, 56, 56)
    assert layer.pad == (1, 1) and layer.stride == (1, 1) and layer.dilation == (1, 1) and layer.groups == 1
    assert layer.flops() == 2.0 * 32 * 64 * 56 * 56 * 64 * 9


def test_parse_1d_spec_with_s_or_r_for_the_kernel():
    a = spec.parse_spec("N=8,C=512,L=1000,K=512,S=3,stride=2")
    b = spec.parse_spec("N=8,C=512,L=1000,K=512,R=3,stride=2")
    assert a.input_shape() == b.input_shape() == (8, 512, 1000)
    assert a.weight_shape() == b.weight_shape() == (512, 512, 3)
    assert a.output_shape() == (8, 512, 499)
    assert a == b


def test_parse_3d_spec():
    layer = spec.parse_spec("N=2,C=32,D=16,H=32,W=32,K=64,T=3,R=3,S=3,pad=1,stride=2")
    assert layer.input_shape() == (2, 32, 16, 32, 32)
    assert layer.weight_shape() == (64, 32, 3, 3, 3)
    assert layer.output_shape() == (2, 64, 8, 16, 16)


def test_parse_dilation_groups_per_dim_values_and_defaults():
    layer = spec.parse_spec("N=4,C=64,H=28,W=30,K=128,R=3,S=5,pad=2x4,dilation=2,groups=4")
    assert layer.pad == (2, 4) and layer.dilation == (2, 2) and layer.kernel == (3, 5)
    assert layer.weight_shape() == (128, 16, 3, 5)
    assert layer.output_shape() == (4, 128, 28, 30)
    plain = spec.parse_spec("N=1,C=3,H=8,W=8,K=4")
    assert plain.kernel == (1, 1) and plain.pad == (0, 0) and plain.groups == 1


def test_parse_transpose_and_fused_ops():
    t = spec.parse_spec("N=2,C=256,H=16,W=16,K=128,R=4,S=4,pad=1,stride=2,op=transpose")
    assert t.weight_shape() == (256, 128, 4, 4)
    assert t.output_shape() == (2, 128, 32, 32)
    x, w, y = t.forward_problem()
    assert x == (2, 128, 32, 32) and y == (2, 256, 16, 16)
    f = spec.parse_spec("N=2,C=8,H=8,W=8,K=8,R=3,S=3,pad=1,op=fused")
    assert f.op == "fused" and f.output_shape() == (2, 8, 8, 8)


@pytest.mark.parametrize("layer", [
    "N=32,C=64,H=56,W=56,K=64,R=3,S=3,pad=1,stride=1,groups=1",
    "N=8,C=512,L=1000,K=512,S=3,stride=2,dilation=2",
    "N=2,C=32,D=16,H=32,W=32,K=64,T=3,R=3,S=3,pad=1x1x0,stride=2",
    "N=2,C=256,H=16,W=16,K=128,R=4,S=4,pad=1,stride=2,op=transpose,opad=1",
    "N=2,C=8,H=8,W=8,K=8,R=3,S=3,pad=1,op=fused,name=block,count=3",
])
def test_spec_round_trips(layer):
    a = spec.parse_spec(layer)
    b = spec.parse_spec(a.spec())
    assert a.spec() == b.spec() and a.name == b.name and a.count == b.count


@pytest.mark.parametrize("bad, words", [
    ("", "empty"),
    ("C=64,H=56,W=56,K=64", "N= is required"),
    ("N=1,C=64,H=56,K=64", "needs H= and W="),
    ("N=1,C=64,H=56,W=56,K=64,R=3,Q=2", "unknown key"),
    ("N=1,C=64,H=56,W=56,K=64,R=3,R=5", "given twice"),
    ("N=1,C=64,H=fifty,W=56,K=64", "must be an integer"),
    ("N=1,C=64,H=56,W=56,K=64,R", "not KEY=VALUE"),
    ("N=1,C=64,L=100,H=5,K=64", "1D spec"),
    ("N=1,C=64,L=100,K=64,R=3,S=3", "S= or R=, not both"),
    ("N=1,C=64,D=4,H=8,K=64", "3D spec needs"),
    ("N=1,C=64,H=8,W=8,K=64,T=3", "needs D="),
    ("N=1,C=64,H=8,W=8,K=64,R=9,S=9", "larger than the padded input"),
    ("N=1,C=64,H=8,W=8,K=64,groups=3", "divisible by groups"),
    ("N=1,C=64,H=8,W=8,K=64,pad=1x2x3", "1 or 2 values"),
    ("N=0,C=64,H=8,W=8,K=64", "positive"),
    ("N=1,C=64,H=8,W=8,K=64,stride=0", "positive"),
    ("N=1,C=64,H=8,W=8,K=64,op=pool", "op must be"),
    ("N=1,C=64,H=8,W=8,K=64,opad=1", "only for op=transpose"),
])
def test_invalid_specs_raise_spec_error(bad, words):
    with pytest.raises(spec.SpecError) as e:
        spec.parse_spec(bad)
    assert words in str(e.value)


def test_layers_file(tmp_path):
    p = tmp_path / "layers.json"
    p.write_text(json.dumps({"layers": ["N=1,C=8,H=8,W=8,K=8,R=3,S=3,pad=1",
                                        {"spec": "N=1,C=8,L=64,K=8,S=3", "name": "mine", "count": 2}]}))
    layers = spec.load_layers_file(str(p))
    assert [l.nsp for l in layers] == [2, 1]
    assert layers[1].name == "mine" and layers[1].count == 2
    p.write_text(json.dumps([{"nospec": 1}]))
    with pytest.raises(spec.SpecError):
        spec.load_layers_file(str(p))


# ---------------------------------------------------------------------------
# suites: every layer a valid convolution, by our params and by cuDNN
# ---------------------------------------------------------------------------

ALL_SUITE_LAYERS = [(name, layer) for name in suites.SUITES for layer in suites.get(name)]


def test_suite_sizes_and_contents():
    r50 = suites.get("resnet50", 128)
    assert len(r50) == 23 and sum(l.count for l in r50) == 53      # ResNet-50's 53 convs, 23 distinct
    assert all(l.n == 128 for l in r50)
    assert suites.get("resnet50", 4)[0].n == 4
    mb = suites.get("mobilenet")
    assert any(l.groups == l.c == l.k > 1 for l in mb) and any(l.kernel == (1, 1) for l in mb)
    assert all(l.nsp == 3 for l in suites.get("unet3d"))
    assert any(l.op == "transpose" for l in suites.get("unet3d"))
    assert all(l.nsp == 1 for l in suites.get("wav2vec")) and len(suites.get("wav2vec")) == 7
    zoo = suites.get("zoo")
    assert {l.op for l in zoo} == {"conv", "transpose", "fused"}
    assert any(any(d > 1 for d in l.dilation) for l in zoo)
    assert any(1 < l.groups < l.c for l in zoo) and any(l.groups == l.c for l in zoo)
    assert {l.nsp for l in zoo} == {1, 2, 3}
    assert all(l.n == 1 for l in suites.get("tiny", 64))               # tiny keeps N=1
    with pytest.raises(ValueError):
        suites.get("vgg")


def _cudnn_output_dims(layer, dtype_code, layout):
    """cuDNN's host-side inference of the forward problem's output (1D as 2D
    with unit height: the legacy API needs 4-D tensors).  A build without
    the legacy engine (CUDNNCONV_LEGACY_API=0) has no such descriptors: skip."""
    ld = pytest.importorskip("cudnnconv.engines.legacy_descriptors",
                             reason="this build has no legacy engine (CUDNNCONV_LEGACY_API=0)")
    x, w, _ = layer.forward_problem()
    geom = layer.geometry()[0]
    pad, stride, dil = geom.padding, geom.stride, geom.dilation
    if layer.nsp == 1:
        x = x[:2] + (1,) + x[2:]
        w = w[:2] + (1,) + w[2:]
        pad, stride, dil = (0,) + pad, (1,) + stride, (1,) + dil
    xd = ld.TensorDescriptor(dtype_code, x, params.layout_strides(x, layout))
    wd = ld.FilterDescriptor(dtype_code, w, layout)
    cd = ld.ConvolutionDescriptor(dtype_code, pad, stride, dil, layer.groups)
    out = ld.forward_output_dims(cd, xd, wd)
    return out if layer.nsp != 1 else out[:2] + out[3:]


@pytest.mark.parametrize("layout", [params.NCHW, params.CHANNELS_LAST])
@pytest.mark.parametrize("suite, layer", ALL_SUITE_LAYERS, ids=[
    "%s-%s" % (s, l.name) for s, l in ALL_SUITE_LAYERS])
def test_suite_layer_is_a_valid_convolution(suite, layer, layout):
    x, w, y = layer.forward_problem()
    geom, out = params.conv_geometry(x, w, layer.geometry()[0].stride, layer.geometry()[0].padding,
                                     layer.geometry()[0].dilation, layer.groups)
    assert out == y
    if layer.op == "transpose":
        assert params.transpose_geometry(layer.input_shape(), layer.weight_shape(), layer.stride, layer.pad,
                                         layer.opad, layer.groups, layer.dilation)[1] == x
    assert _cudnn_output_dims(layer, params.cudnn_dtype("float16"), layout) == y
    assert layer.flops() > 0
    assert spec.parse_spec(layer.spec()) == layer


def test_directions_for_each_op():
    conv, tr, fu = (spec.parse_spec("N=1,C=8,H=8,W=8,K=8,R=3,S=3,pad=1,op=%s" % op)
                    for op in ("conv", "transpose", "fused"))
    assert runner.directions_for(conv, ["fwd", "dgrad", "wgrad"]) == ["fwd", "dgrad", "wgrad"]
    assert runner.directions_for(conv, ["wgrad"]) == ["wgrad"]
    assert runner.directions_for(tr, ["fwd", "dgrad"]) == ["fwd"]
    assert runner.directions_for(fu, ["dgrad"]) == []


def test_timing_helpers():
    from bench import timing
    assert timing.sets_needed(200 << 20, 50 << 20) == 1
    assert timing.sets_needed(10 << 20, 50 << 20) == 15
    assert timing.sets_needed(1, 50 << 20) == 16
    assert timing.repeats_for(0.01, 1.0, 5, 50) == 50
    assert timing.repeats_for(1.0, 1.0, 5, 50) == 5


def test_describe_choice_reads_legacy_and_graph_shaped_choices():
    legacy = {"engine": "legacy", "path": "direct", "choices": [
        {"algo_name": "IMPLICIT_PRECOMP_GEMM", "math_type": "TENSOR_OP_MATH", "workspace": 1024}]}
    assert runner.describe_choice(legacy) == ("IMPLICIT_PRECOMP_GEMM+TC", 1024, "direct")
    graph = {"engine": "graph", "path": "fused", "choices": [{"engine_tag": "eng0_k2=3", "workspace_bytes": 7},
                                                             {"engine_tag": "eng0_k2=3", "workspace_bytes": 9}]}
    assert runner.describe_choice(graph) == ("eng0_k2=3", 9, "fused")
    knobs = {"engine": "graph", "path": "direct", "choices": [{"tag": "eng62", "knobs": {"SPLIT_K": 2, "TILE": 5},
                                                                "workspace": 131}]}
    assert runner.describe_choice(knobs) == ("eng62{SPLIT_K=2,TILE=5}", 131, "direct")
    tagged = {"engine": "graph", "path": "direct", "choices": [{"tag": "eng62_k2=4_k13=0", "knobs": {2: 4, 13: 0},
                                                                 "workspace": 0}]}
    assert runner.describe_choice(tagged) == ("eng62_k2=4_k13=0", 0, "direct")      # the knobs shown once
    assert runner.describe_choice(None) == (None, None, None)


# ---------------------------------------------------------------------------
# results: schema, tables, chart, comparison (synthetic numbers)
# ---------------------------------------------------------------------------

def _entry(status="ok", kernel=None, eager=None, host=None, **kw):
    e = {"status": status, "kernel_ms": kernel, "eager_ms": eager, "host_us": host, "rel_err": None, "notes": []}
    if status == "ok":
        e["rel_err"] = 1e-4
    e.update(kw)
    return e


def _record(layer, direction, ours, torch):
    return {"layer": layer.name, "spec": layer.spec(with_name=False), "shape": layer.shape_text(), "op": layer.op,
            "count": layer.count, "direction": direction, "flops": layer.flops(), "input_shape": [],
            "weight_shape": [], "output_shape": [], "ours": ours, "peers": {"torch": torch}}


def synthetic_result(scale=1.0, fail_layer=None):
    """Two layers x two directions x two engines with made-up times; ours
    are ``scale`` x torch's, legacy always 2 x torch's."""
    layers = [spec.parse_spec("N=8,C=64,H=56,W=56,K=64,R=3,S=3,pad=1", name="a"),
              spec.parse_spec("N=8,C=256,H=14,W=14,K=256,R=1,S=1", name="b", count=3),
              spec.parse_spec("N=1,C=8,H=8,W=8,K=8,R=3,S=3,pad=1", name="tiny")]
    recs = []
    for i, layer in enumerate(layers):
        for d in ("fwd", "wgrad"):
            t = 0.5 * (i + 1) if layer.name != "tiny" else 0.01
            graph = (_entry("FAIL", rel_err=0.5) if layer.name == fail_layer else
                     _entry(kernel=t * scale, eager=t * scale + 0.01, host=12.0, algo="eng%d" % i, workspace=1 << 20,
                            path="direct"))
            recs.append(_record(layer, d, {"graph": graph,
                                           "legacy": _entry(kernel=2 * t, eager=2 * t, host=20.0, algo="GEMM",
                                                            workspace=0, path="direct")},
                                _entry(kernel=t, eager=t + 0.02, host=15.0)))
    env = {"date": "2026-11-24T00:00:00+00:00", "gpu": "NVIDIA H100 80GB HBM3", "driver": "580 (CUDA 13.0)",
           "cuda_runtime": "13.0", "cudnn": "9.19.0", "cupy": "14.0.0", "torch": "2.11.0", "jax": None,
           "sm": "9.0", "gpu_memory_gib": 79.2}
    config = {"suites": ["synthetic"], "dtype": "float16", "layout": "NHWC", "directions": ["fwd", "wgrad"],
              "engines": ["graph", "legacy"], "compare": ["torch"]}
    return report.make_result(config, env, 800.0, recs, ["a note"], wall_s=12.0)


def test_synthetic_result_validates_and_round_trips_through_json(tmp_path):
    res = synthetic_result(0.8)
    assert report.validate(res)
    p = tmp_path / "r.json"
    report.write_json(res, str(p))
    back = report.load(str(p))
    assert back["records"] == json.loads(json.dumps(res["records"]))
    assert back["env"]["gpu"].startswith("NVIDIA H100")


def test_summary_numbers():
    s = synthetic_result(0.8)["summary"]
    g = s["graph"]["fwd"]
    assert g["geomean_ratio_kernel"] == pytest.approx(0.8)
    assert s["legacy"]["wgrad"]["geomean_ratio_kernel"] == pytest.approx(2.0)
    assert s["legacy"]["fwd"]["over_target"] == ["a", "b", "tiny"]
    assert g["largest"]["layer"] == "a"
    flops_a = spec.parse_spec("N=8,C=64,H=56,W=56,K=64,R=3,S=3,pad=1").flops()
    assert g["largest"]["peak_fraction"] == pytest.approx(flops_a / (0.4e-3) / 1e12 / 800.0)
    assert g["network_ms"]["ratio"] == pytest.approx(0.8)
    assert s["graph"]["host"]["layers"][0]["layer"] == "tiny"
    assert s["graph"]["host"]["geomean_ratio"] == pytest.approx(12.0 / 15.0)


# ---------------------------------------------------------------------------
# the roofline (bench/roofline.py and its columns)
# ---------------------------------------------------------------------------

def test_roofline_bound_is_the_slower_of_arithmetic_and_memory():
    assert [roofline.peak_key(d, t) for d, t in (("float16", False), ("bfloat16", True), ("float32", True),
                                                  ("float32", False), ("float64", True))] == \
        ["fp16", "bf16", "tf32", "fp32", "fp64"]
    rec = {"flops": 2e12, "input_shape": [4, 8, 10, 10], "weight_shape": [8, 8, 3, 3], "output_shape": [4, 8, 10, 10]}
    assert roofline.bytes_moved(rec, 2) == 2 * (3200 + 576 + 3200)
    assert roofline.bytes_moved(dict(rec, weight_shape=[]), 2) is None
    # compute-bound: 2 TFLOP at 500 TFLOP/s is 4 ms; 13,952 bytes at 4 TB/s is nothing
    assert roofline.bound_ms(2e12, 13952, 500.0, 4.0) == pytest.approx(4.0)
    # memory-bound: 8 GB at 4 TB/s is 2 ms, 1 GFLOP at 500 is 2 us
    assert roofline.bound_ms(1e9, 8e9, 500.0, 4.0) == pytest.approx(2.0)
    assert roofline.bound_ms(1e9, 8e9, None, 4.0) is None and roofline.bound_ms(1e9, 8e9, 500.0, None) is None
    assert roofline.fraction(2.0, 2.5) == pytest.approx(0.8)
    assert roofline.fraction(None, 2.5) is None and roofline.fraction(2.0, 0) is None
    peaks = {"fp16": 500.0, "tf32": 250.0, "fp32": 50.0, "copy_tb_s": 4.0}
    assert roofline.record_bound_ms(rec, peaks, "float16", True) == pytest.approx(4.0)
    assert roofline.record_bound_ms(rec, peaks, "float32", True) == pytest.approx(8.0)
    assert roofline.record_bound_ms(rec, peaks, "float32", False) == pytest.approx(40.0)
    assert roofline.record_bound_ms(rec, peaks, "bfloat16", True) is None         # no bf16 peak measured
    assert roofline.record_bound_ms(rec, None, "float16", True) is None


def _roofline_result():
    """Two layers with shapes, fwd and dgrad, ours at 1.25x and 2x the bound, torch at 2x and 4x."""
    a = spec.parse_spec("N=8,C=64,H=56,W=56,K=64,R=3,S=3,pad=1", name="a")
    b = spec.parse_spec("N=8,C=256,H=14,W=14,K=256,R=1,S=1", name="b")
    peaks = {"fp16": 500.0, "bf16": 480.0, "tf32": 250.0, "fp32": 50.0, "fp64": None, "copy_tb_s": 4.0}
    recs = []
    for layer, ours_x, torch_x in ((a, 1.25, 2.0), (b, 2.0, 4.0)):
        for d in ("fwd", "dgrad"):
            rec = _record(layer, d, {}, {})
            rec["input_shape"] = list(layer.input_shape())
            rec["weight_shape"] = list(layer.weight_shape())
            rec["output_shape"] = list(layer.output_shape())
            bound = roofline.record_bound_ms(rec, peaks, "float16", True)
            rec["ours"] = {"graph": _entry(kernel=bound * ours_x, eager=bound * ours_x)}
            rec["peers"] = {"torch": _entry(kernel=bound * torch_x, eager=bound * torch_x)}
            recs.append(rec)
    config = {"suites": ["synthetic"], "dtype": "float16", "layout": "NHWC", "directions": ["fwd", "dgrad"],
              "engines": ["graph"], "compare": ["torch"], "allow_tf32": True}
    env = dict(synthetic_result()["env"])
    return report.make_result(config, env, 500.0, recs, [], wall_s=1.0, peaks=peaks)


def test_roofline_fraction_in_the_summary_table_and_chart(tmp_path):
    res = _roofline_result()
    assert report.validate(res)
    for d in ("fwd", "dgrad"):
        s = res["summary"]["graph"][d]
        assert s["roofline_fraction_geomean"] == pytest.approx(math.sqrt(0.8 * 0.5))
        assert s["roofline_fraction_geomean_torch"] == pytest.approx(math.sqrt(0.5 * 0.25))
    text = report.table_text(res)
    header = [l for l in text.splitlines() if l.startswith("layer")][0]
    assert "roof ms" in header and "%roof" in header and "torch %roof" in header
    row = [l for l in text.splitlines() if l.startswith("a 3x3") and " fwd " in l][0]
    assert "80%" in row and "50%" in row
    assert "roofline peaks, measured in this run: matmul fp16 500, bf16 480, TF32 250, fp32 50" in text
    assert "device copy 4.00 TB/s" in text
    assert "graph fwd   roofline fraction geomean 0.632 (torch 0.354)" in text
    md = report.markdown(res)
    assert "%roof" in md and "roofline fraction geomean 0.632" in md
    paths = report.write_all(res, str(tmp_path), "r")
    assert json.load(open(paths["json"]))["peaks"]["copy_tb_s"] == 4.0


def test_a_result_without_peaks_has_no_roofline():
    res = synthetic_result(0.9)                      # no peaks (as results written before the roofline)
    assert res["peaks"] is None
    assert res["summary"]["graph"]["fwd"]["roofline_fraction_geomean"] is None
    text = report.table_text(res)
    assert "roofline peaks" not in text and "roofline fraction" not in text
    res.pop("peaks")
    assert report.validate(res)


@pytest.mark.parametrize("mutate, words", [
    (lambda r: r.update(peaks=[1.0]), "peaks must be"),
    (lambda r: r.update(peaks={"fp16": "fast"}), "peaks must be"),
    (lambda r: r.update(schema="other"), "schema must be"),
    (lambda r: r["env"].pop("cudnn"), "env lacks"),
    (lambda r: r["config"].pop("dtype"), "config lacks"),
    (lambda r: r["records"][0].update(direction="sideways"), "direction"),
    (lambda r: r["records"][0]["ours"]["graph"].update(status="great"), "status must be"),
    (lambda r: r["records"][0]["ours"]["graph"].update(kernel_ms="fast"), "number or null"),
    (lambda r: r["records"][0]["ours"]["graph"].update(status="FAIL"), "a FAIL carries no time"),
    (lambda r: r["records"][0].pop("flops"), "flops"),
])
def test_schema_violations_are_caught(mutate, words):
    res = synthetic_result()
    mutate(res)
    with pytest.raises(ValueError) as e:
        report.validate(res)
    assert words in str(e.value)


def test_fail_shows_in_the_table_never_a_time():
    res = synthetic_result(0.8, fail_layer="a")
    text = report.table_text(res)
    rows = [l for l in text.splitlines() if l.startswith("a 3x3")]
    assert len(rows) == 2
    for row in rows:
        assert "FAIL(5.0e-01)" in row
        assert "0.400" not in row                # the time our failed run would have had
    assert res["summary"]["graph"]["fwd"]["failures"] == ["a"]
    md = report.markdown(res)
    assert md.count("FAIL(5.0e-01)") == 2 and "| layer | dir |" in md


def test_table_columns_and_header():
    text = report.table_text(synthetic_result(1.1))
    assert "measured peak: 800 TFLOP/s" in text and "NVIDIA H100" in text and "cuDNN 9.19.0" in text
    header = [l for l in text.splitlines() if l.startswith("layer")][0]
    for col in ("graph ms", "legacy ms", "torch ms", "graph/torch", "legacy/torch", "TFLOP/s", "%peak",
                "algo (graph)", "ws MiB"):
        assert col in header
    assert "1.10!" in text                        # over the 1.05 target is flagged
    assert "note: a note" in text
    assert "search: exhaustive" not in text


def test_an_exhaustive_runs_header_says_so_with_its_budget():
    res = synthetic_result(0.9)
    res["config"]["exhaustive_budget_s"] = 5.0
    assert "search: exhaustive (cudnnconv.benchmark_settings(exhaustive=True)), budget 5 s per problem, " \
        "every engine with its default knobs (no knob sweep)" in report.markdown(res)
    res["config"]["knob_sweep"] = True
    assert "budget 5 s per problem, knob settings swept in a worker process" in report.markdown(res)


def test_write_all_outputs(tmp_path):
    paths = report.write_all(synthetic_result(0.9), str(tmp_path), "x")
    assert os.path.exists(paths["json"]) and os.path.exists(paths["md"])
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "png" not in paths
    else:
        with open(paths["png"], "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_gpu_slug():
    assert report.gpu_slug("NVIDIA H100 80GB HBM3") == "h100"
    assert report.gpu_slug("NVIDIA H200") == "h200"
    assert report.gpu_slug("NVIDIA A100-SXM4-80GB") == "a100"
    assert report.gpu_slug(None) == "gpu"


def test_compare_results_prints_per_layer_ratios(tmp_path, capsys):
    a, b = synthetic_result(1.0), synthetic_result(0.5)
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    report.write_json(a, str(pa))
    report.write_json(b, str(pb))
    rows = report.compare(a, b)
    graph = [r for r in rows if r["who"] == "graph"]
    assert len(graph) == 6 and all(r["ratio"] == pytest.approx(0.5) for r in graph)
    assert all(r["ratio"] == pytest.approx(1.0) for r in rows if r["who"] in ("legacy", "torch"))
    assert bench_main(["--compare-results", str(pa), str(pb)]) == 0
    out = capsys.readouterr().out
    lines = [l for l in out.splitlines() if l.startswith("3x3 64->64 @56") and " graph " in l]
    assert len(lines) == 2 and all(l.split()[-1] == "0.500" for l in lines)
    assert "geomean B/A graph        fwd   0.500 over 3 layers" in out
    assert "geomean B/A legacy       wgrad 1.000 over 3 layers" in out


def test_compare_results_skips_failed_and_unmatched_layers():
    a, b = synthetic_result(1.0), synthetic_result(0.5, fail_layer="b")
    b["records"] = b["records"][2:]              # layer a missing from B
    rows = report.compare(a, b)
    assert {r["layer"] for r in rows} == {"b", "tiny"}
    assert not any(r["layer"] == "b" and r["who"] == "graph" for r in rows)


def test_cli_list_and_errors(capsys):
    assert bench_main(["--suite", "tiny", "--list"]) == 0
    out = capsys.readouterr().out
    assert "tiny3x3" in out and "N=1,C=8,H=8,W=8,K=8" in out
    assert bench_main(["--layer", "N=1,C=8,H=8,W=8,K=8,Q=1", "--list"]) == 2
    assert "unknown key" in capsys.readouterr().err
    assert bench_main(["--list"]) == 2
    assert bench_main(["--suite", "tiny", "--direction", "up", "--list"]) == 2
    assert bench_main(["--suite", "tiny", "--dtype", "int8", "--list"]) == 2


def test_cli_exhaustive_budget_is_checked_before_any_work(capsys):
    import cudnnconv
    before = cudnnconv.benchmark_settings()
    for bad in ("0", "-1", "inf"):
        assert bench_main(["--suite", "tiny", "--exhaustive", bad]) == 2
        assert "exhaustive_budget_s" in capsys.readouterr().err
    assert cudnnconv.benchmark_settings() == before


def test_first_calls_are_summed_with_their_searches():
    res = synthetic_result(0.9)
    for i, r in enumerate(res["records"]):
        r["ours"]["graph"].update(first_call_ms=100.0 * (i + 1), searches=1 if i < 4 else 0)
    res["summary"] = report.summarize(res)
    fc = res["summary"]["graph"]["first_calls"]
    n = len(res["records"])
    assert fc == {"problems": n, "seconds": pytest.approx(0.1 * n * (n + 1) / 2), "searches": 4}
    assert res["summary"]["legacy"]["first_calls"] == {"problems": 0, "seconds": 0.0, "searches": 0}
    text = "\n".join(report.summary_lines(res))
    assert "graph first calls (searches included): %.1f s over %d problems, 4 searched" % (
        0.1 * n * (n + 1) / 2, n) in text
    assert "legacy first calls" not in text          # no first-call times: no line


def test_an_exhaustive_run_writes_its_own_results_beside_the_benchmark_runs():
    import argparse
    run = argparse.Namespace(name=None, suite=["resnet50"], layout="nhwc", exhaustive=None)
    assert result_name(run, "NVIDIA H200", "float16") == "h200_resnet50_fp16_nhwc"
    run.exhaustive = 5.0
    assert result_name(run, "NVIDIA H200", "float16") == "h200_resnet50_fp16_nhwc_exhaustive"
    run.suite, run.layout = [], "nchw"
    assert result_name(run, "NVIDIA H200", "float32") == "h200_custom_fp32_nchw_exhaustive"
    run.name = "mine"
    assert result_name(run, "NVIDIA H200", "float32") == "mine"


def test_cli_batch_applies_to_layers_and_suites_but_not_tiny(capsys):
    assert bench_main(["--suite", "resnet50,tiny", "--layer", "N=2,C=8,H=8,W=8,K=8", "--batch", "16",
                       "--list"]) == 0
    out = capsys.readouterr().out
    assert "N=16,C=3,H=224" in out and "N=16,C=8,H=8,W=8,K=8" in out and "N=1,C=8,H=8,W=8,K=8,R=3" in out


def test_python_dash_m_bench_runs_from_a_checkout():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([REPO, os.path.join(REPO, "pyx"), env.get("PYTHONPATH", "")])
    res = subprocess.run([sys.executable, "-m", "bench", "--suite", "wav2vec", "--list"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("\n") == 7


def test_tolerances_cover_every_dtype():
    for name in set(runner.DTYPES.values()):
        assert 0 < runner.tolerance(name) < 0.1
    assert runner.tolerance("float32", allow_tf32=False) < runner.tolerance("float32")
    assert math.isfinite(runner.tolerance("float16"))


# ---------------------------------------------------------------------------
# bench/warm_cache.py: its report from synthetic results
# ---------------------------------------------------------------------------

def test_warm_cache_report_from_synthetic_results():
    from bench import warm_cache
    layers = warm_cache.resnet50_layers(32)
    assert len(layers) == 23 and layers[0][0] == "conv1" and layers[0][1] == (32, 3, 224, 224)

    def rows(first, steady, tags, after_gen=None):
        out = [{"layer": name, "first_ms": first, "steady_ms": steady,
                "choice": {"engine": "graph", "tag": t, "time_ms": 0.05 if t == "eng1" else 0.052}}
               for (name, *_), t in zip(layers[:2], tags)]
        for r in out:
            if after_gen is not None:
                r["after_gen_ms"] = after_gen
        return out

    info = {"graph": [2, 1024, 2, 0], "legacy": [0, 4096, 0, 0]}
    base = {"graph": [0, 1024, 0, 0], "legacy": [0, 4096, 0, 0]}
    res = {"config": {"batch": 32, "dtype": "float16", "engine": "auto", "channels_last": False},
           "cold": {"rows": rows(100.0, 0.1, ["eng1", "eng1"]), "cache_info": info, "cache_info_before": base,
                    "load_ms": 40.0},
           "warm": {"rows": rows(0.3, 0.1, ["eng1", "eng1"]), "cache_info": info, "cache_info_before": base,
                    "load_ms": 45.0},
           "warm+warmup": {"rows": rows(0.15, 0.1, ["eng1", "eng1"], after_gen=0.14), "cache_info": info,
                           "cache_info_before": base, "load_ms": 60.0},
           "warm+warmup/net": {"rows": rows(0.12, 0.1, ["eng1", "eng1"]), "cache_info": info,
                               "cache_info_before": base, "load_ms": 61.0},
           "torch": {"skipped": "torch is not installed"},
           "stability": {"processes": 2, "layers": 2, "layers_changed": 1,
                         "changed": [{"layer": "conv1", "choices": [{"tag": "eng1", "time_ms": 0.05},
                                                                    {"tag": "eng2", "time_ms": 0.052}],
                                      "steady_ms": [0.1, 0.11], "steady_spread_pct": 10.0,
                                      "bench_ms": [0.05, 0.052], "pick_gap_pct": 4.0}]}}
    for mode in ("cold", "warm", "warm+warmup", "warm+warmup/net"):
        res[mode]["ratios"] = warm_cache._ratios(res[mode]["rows"])
    assert res["warm+warmup"]["ratios"]["median"] == pytest.approx(1.5)
    assert res["warm"]["ratios"]["layers_over_2x"] == 2
    text = warm_cache.render_markdown(res)
    assert "| warm+warmup | 1.50 | 1.50 | 0 | 0.3 | 0.2 | 60.0 | graph 2/0, legacy 0/0 | 1.40 |" in text
    assert "| torch | torch is not installed |" in text
    assert "| warm+warmup/net | 1.20 | 1.20 | 0 | 0.2 | 0.2 | 61.0 | graph 2/0, legacy 0/0 | - |" in text
    assert "| conv1 | 100.00 | 0.30 | 0.15 | 0.100 | 3.00 | 1.50 | 1.20 | - |" in text
    assert "1 layer(s) chose differently" in text and "differ by 4.0%" in text


def test_warm_cache_merges_fresh_processes_by_median():
    from bench import warm_cache

    def run(firsts, steady, hits):
        return {"rows": [{"layer": "l%d" % i, "first_ms": f, "steady_ms": steady, "after_gen_ms": steady * 1.5}
                         for i, f in enumerate(firsts)],
                "cache_info": {"graph": [2, 1024, hits, 0]}, "cache_info_before": {"graph": [0, 1024, 0, 0]},
                "load_ms": 10.0 * hits}

    m = warm_cache._merge_runs([run([0.2, 5.0], 0.1, 1), run([0.3, 0.4], 0.2, 2), run([0.1, 0.5], 0.3, 3)])
    assert m["processes"] == 3
    assert [r["first_ms"] for r in m["rows"]] == [0.2, 0.5]          # one outlier process does not move the median
    assert [r["steady_ms"] for r in m["rows"]] == [0.2, 0.2]
    assert m["rows"][1]["first_runs_ms"] == [5.0, 0.4, 0.5]
    assert m["rows"][0]["after_gen_ms"] == pytest.approx(0.3)
    assert m["cache_info"]["graph"] == [2, 1024, 6, 0] and m["load_ms"] == 20.0
    err = {"error": "boom"}
    assert warm_cache._merge_runs([run([0.2], 0.1, 1), err]) is err  # a failed process is never dropped quietly


# ---------------------------------------------------------------------------
# bench/epilogue.py (the fused epilogue's benchmark): its layers and its report
# ---------------------------------------------------------------------------

def test_epilogue_bench_layers_are_the_issues_and_valid():
    from bench import epilogue
    from cudnnconv import params
    got = epilogue.layers(128)
    names = [layer.name for layer in got]
    assert any("resnet50" in n and "3x3" in n for n in names) and any("resnet50" in n and "1x1" in n for n in names)
    assert any("mobilenetv2" in n and ".dw" in n for n in names) and any("convnext" in n and "7x7" in n for n in names)
    for layer in got:
        assert layer.n == 128
        geom, y = params.conv_geometry(layer.input_shape(), layer.weight_shape(), *[
            getattr(layer.geometry()[0], k) for k in ("stride", "padding", "dilation")], layer.groups)
        assert y == tuple(layer.output_shape())


def _epilogue_row(layer, act, fused, composed, torch, refused=False, conv=None):
    from bench import epilogue
    f = {"status": "refused", "kernel_ms": None, "detail": "CUDNN_STATUS_NOT_SUPPORTED"} if refused else \
        {"status": "ok", "kernel_ms": fused, "config": "eng9"}
    row = {"layer": layer, "act": act, "shape": "?", "fused": f,
           "composed": {"status": "ok", "kernel_ms": composed}, "torch": {"status": "ok", "kernel_ms": torch},
           "fused_vs_composed": epilogue.ratio(f["kernel_ms"], composed),
           "fused_vs_torch": epilogue.ratio(f["kernel_ms"], torch)}
    if conv is not None:
        row["conv"] = {"status": "ok", "kernel_ms": conv}
        row["fused_vs_conv"] = epilogue.ratio(f["kernel_ms"], conv)
    return row


def test_epilogue_bench_summary_and_markdown():
    from bench import epilogue
    rows = [_epilogue_row("a", "silu", 0.5, 1.0, 2.0), _epilogue_row("b", "silu", 0.2, 0.4, 0.2),
            _epilogue_row("a", "gelu", None, 1.0, 2.0, refused=True),
            dict(_epilogue_row("a", "silu", 0.7, 1.0, 1.5), direction="dgrad")]
    result = {"env": {"gpu": "NVIDIA H200", "cudnn": "9.19.0", "cupy": "14.2.0", "torch": "2.11.0",
                      "date": "2026-12-03"},
              "config": {"batch": 128, "dtype": "float16", "acts": ["gelu", "silu"], "residual": False},
              "rows": rows, "notes": []}
    s = epilogue.summarize(result)
    assert s["fwd silu"]["fused_vs_composed_geomean"] == pytest.approx(0.5)
    assert s["fwd silu"]["fused_vs_torch_geomean"] == pytest.approx(math.sqrt(0.25 * 1.0))
    assert s["fwd silu"]["fused_vs_torch_max"] == pytest.approx(1.0) and s["fwd silu"]["fused"] == 2
    assert s["dgrad silu"]["fused_vs_composed_geomean"] == pytest.approx(0.7)
    assert s["fwd silu"]["meets_vs_composed"] is True and s["fwd silu"]["meets_vs_torch"] is True   # 0.50 <= 0.50
    assert s["dgrad silu"]["meets_vs_composed"] is True and s["dgrad silu"]["target_vs_composed"] == 0.75
    assert s["dgrad silu"]["meets_vs_torch"] is None                      # no target against PyTorch there
    assert s["fwd gelu"] == {"layers": 1, "fused": 0, "refused": ["a"], "fused_vs_composed_geomean": None,
                             "fused_vs_torch_geomean": None, "fused_vs_composed_max": None,
                             "fused_vs_torch_max": None, "target_vs_composed": 0.6, "meets_vs_composed": None,
                             "target_vs_torch": 0.5, "meets_vs_torch": None, "auto_composed": 0,
                             "auto_vs_torch_geomean": None, "fused_vs_conv_geomean": None,
                             "conv_vs_composed_geomean": None}
    result["summary"] = s
    md = epilogue.markdown(result)
    assert "| a | fwd | gelu | refused (CUDNN_STATUS_NOT_SUPPORTED) | 1.0000 | 2.0000 | - | - | - | - | - | - |" in md
    assert "| b | fwd | silu | 0.2000 | 0.4000 | 0.2000 | - | - | 0.50 | 1.00 | - | eng9 |" in md
    assert "| a | dgrad | silu | 0.7000 | 1.0000 | 1.5000 | - | - | 0.70 | 0.47 | - | eng9 |" in md
    assert "fused/conv" not in md.split("## Summary")[1]     # rows without the bare convolution say nothing of it
    assert "- fwd gelu: fused on 0 of 1 layers (cuDNN refused: a)" in md
    assert "- fwd silu: fused on 2 of 2 layers; fused/composed geomean 0.50 (target 0.60: met) (max 0.50), " \
        "fused/torch geomean 0.50 (target 0.50: met)" in md
    assert "- dgrad silu: fused on 1 of 1 layers; fused/composed geomean 0.70 (target 0.75: met)" in md
    result["rows"][-1]["fused_vs_composed"] = 0.8
    assert epilogue.summarize(result)["dgrad silu"]["meets_vs_composed"] is False
    assert "targets: fused/composed <= 0.60, fused/torch <= 0.50" in md
    assert "fusion='auto'" not in md.split("## Summary")[1]   # rows without an auto measurement say nothing of it


def test_epilogue_bench_reports_what_auto_kept():
    from bench import epilogue
    rows = [dict(_epilogue_row("a", "silu", 0.5, 0.4, 1.0), auto={"path": "composed", "kernel_ms": 0.4},
                 auto_vs_torch=0.4),
            dict(_epilogue_row("b", "silu", 0.2, 0.4, 0.4), auto={"path": "fused", "kernel_ms": 0.2},
                 auto_vs_torch=0.5)]
    result = {"env": {"gpu": "NVIDIA H200"}, "config": {"batch": 128, "dtype": "float16"}, "rows": rows,
              "notes": []}
    result["summary"] = s = epilogue.summarize(result)
    assert s["fwd silu"]["auto_composed"] == 1
    assert s["fwd silu"]["auto_vs_torch_geomean"] == pytest.approx(math.sqrt(0.4 * 0.5))
    md = epilogue.markdown(result)
    assert "fusion='auto' (benchmark) composed on 1, auto/torch geomean 0.45" in md
    assert "| a | fwd | silu | 0.5000 | 0.4000 | 1.0000 | - | 0.4000 (composed) |" in md


def test_epilogue_bench_reports_the_bare_convolution():
    from bench import epilogue
    # fused 0.5 over a 0.4 convolution; composed 1.0: the convolution alone is 0.4 of the composed path
    rows = [_epilogue_row("a", "silu", 0.5, 1.0, 2.0, conv=0.4), _epilogue_row("b", "silu", 0.9, 1.0, 1.0, conv=0.9)]
    result = {"env": {"gpu": "NVIDIA H200"}, "config": {"batch": 128, "dtype": "float16", "residual": False},
              "rows": rows, "notes": []}
    result["summary"] = s = epilogue.summarize(result)
    assert s["fwd silu"]["fused_vs_conv_geomean"] == pytest.approx(math.sqrt(1.25 * 1.0))
    assert s["fwd silu"]["conv_vs_composed_geomean"] == pytest.approx(math.sqrt(0.4 * 0.9))
    md = epilogue.markdown(result)
    assert "| a | fwd | silu | 0.5000 | 1.0000 | 2.0000 | 0.4000 | - | 0.50 | 0.25 | 1.25 | eng9 |" in md
    assert "fused/conv geomean 1.12, conv/composed geomean 0.60" in md


def test_epilogue_bench_lists_its_work_without_a_gpu(capsys):
    from bench import epilogue
    assert epilogue.main(["--list", "--acts", "silu,swish", "--all-acts-on", "1", "--direction", "fwd"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10 + 9 and all(ln.split()[-1] != "swish" for ln in lines)
    assert epilogue.main(["--list", "--acts", "identity,relu", "--all-acts-on", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    fwd = [ln for ln in lines if ln.split()[-2] == "fwd"]
    dgrad = [ln for ln in lines if ln.split()[-2] == "dgrad"]
    assert len(fwd) == 20 + 8 and len(dgrad) == 10 + 8      # no identity in dgrad: it has no derivative to fuse
    assert not any(ln.split()[-1] == "identity" for ln in dgrad)
    assert epilogue.main(["--list", "--direction", "wgrad"]) == 2


def test_epilogue_bench_lists_where_auto_kept_the_slower_path():
    """A row where auto took over 1.1x the faster path is listed with the times its decision weighed;
    one within that, or without an auto time, is not."""
    from bench import epilogue
    miss = dict(_epilogue_row("a", "silu", 0.131, 0.059, 0.06), direction="dgrad",
                auto={"path": "fused", "kernel_ms": 0.131,
                      "decision": {"path": "fused", "fused_ms": 0.05, "conv_ms": 0.044, "kernel_ms": None}})
    near = dict(_epilogue_row("b", "silu", 0.2, 0.21, 0.3), auto={"path": "composed", "kernel_ms": 0.21})
    bare = _epilogue_row("c", "silu", 0.2, 0.1, 0.3)
    got = epilogue.auto_misses([miss, near, bare])
    assert [(m["layer"], m["kept"], m["auto_ms"], m["composed_ms"]) for m in got] == [("a", "fused", 0.131, 0.059)]
    result = {"env": {"gpu": "NVIDIA H200"}, "config": {"batch": 128, "dtype": "float16"},
              "rows": [miss, near, bare], "notes": []}
    result["summary"] = epilogue.summarize(result)
    assert "- fusion='auto' kept the slower path: a dgrad silu, kept fused (0.1310 ms), fused 0.1310, composed " \
        "0.0590; it weighed fused 0.0500, conv 0.0440 + kernel -" in epilogue.markdown(result)


def test_epilogue_bench_catches_auto_decisions_from_the_log():
    """_decisions() collects the Decision fusion_choice logs, only while inside, and restores the
    logger's level."""
    import logging
    from bench import epilogue
    from cudnnconv import _log, fusion_choice
    logger = logging.getLogger("cudnnconv")
    before = logger.level
    got = []
    with epilogue._decisions(got):
        _log.debug("%s: fusion='auto' decided %r", "epilogue", fusion_choice.Decision("composed", 0.2, 0.1, 0.03))
        _log.debug("graph: %s: benchmarked %d plans", "epilogue", 3)
    _log.debug("%s: fusion='auto' decided %r", "epilogue", fusion_choice.Decision("fused", 0.2, None, None))
    assert got == [{"path": "composed", "fused_ms": 0.2, "conv_ms": 0.1, "kernel_ms": 0.03}]
    assert logger.level == before and logger.propagate
