"""A/B of the helpers a first call runs: params.py at an older commit against this tree.

    git show 82da5b8:pyx/cudnnconv/params.py > /tmp/params_old.py
    python3 bench/first_call_helpers_ab.py /tmp/params_old.py
"""
import importlib.util, os, sys, timeit, math, numpy
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyx"))
from cudnnconv import params as new
spec = importlib.util.spec_from_file_location("params_old", sys.argv[1])
old = importlib.util.module_from_spec(spec); spec.loader.exec_module(old)
class A:  # array metadata as has_layout reads it
    def __init__(s, shape, strides, itemsize): s.shape, s.strides, s.itemsize = shape, strides, itemsize
x = A((32, 64, 56, 56), tuple(v * 2 for v in new._layout_strides((32, 64, 56, 56), "NCHW")), 2)
w = A((64, 64, 3, 3), tuple(v * 2 for v in new._layout_strides((64, 64, 3, 3), "NCHW")), 2)
dt = numpy.dtype("float16")
def first_pass(m):
    # what conv()'s first call does with these helpers
    geom, y = m.conv_geometry(x.shape, w.shape, 1, 1, 1, 1)
    m.cudnn_dtype(dt); m.cudnn_dtype(dt)
    for a in (x, w, x, w):
        m.has_layout(a, "NCHW")
    m.has_layout(x, "NHWC")
    return geom, y
def numel_old(): return int(numpy.prod(x.shape[:2] + tuple(s + e for s, e in zip(x.shape[2:], (0, 0))))), int(numpy.prod((32, 64, 56, 56)))
def numel_new(): return math.prod(x.shape[:2]) * math.prod(s + e for s, e in zip(x.shape[2:], (0, 0))), math.prod((32, 64, 56, 56))
for name, f in (("params helpers, old", lambda: first_pass(old)), ("params helpers, new", lambda: first_pass(new)),
                ("numel, old (numpy.prod)", numel_old), ("numel, new (math.prod)", numel_new)):
    n = 20000
    t = min(timeit.repeat(f, number=n, repeat=5)) / n * 1e6
    print("%-28s %.2f us" % (name, t))
