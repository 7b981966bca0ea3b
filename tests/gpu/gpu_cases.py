"""Problem grids shared by the GPU tests (small shapes; a few larger ones)."""
import collections

import cudnnconv

ENGINES = cudnnconv.build_info()["engines"]
DTYPES = ["float64", "float32", "float16", "bfloat16"]
LAYOUTS = ["nchw", "channels_last"]
# (dtype, benchmark) pairs: every dtype with the heuristic choice, and the two
# common ones with benchmark=True too (a benchmarking search per problem is the
# slow part of the suite; the search code is shared by all dtypes).
DTYPE_BENCH = [(d, False) for d in DTYPES] + [(d, True) for d in ("float32", "float16")]
DTYPE_BENCH_IDS = ["%s-%s" % (d, "bench" if b else "heur") for d, b in DTYPE_BENCH]

Case = collections.namedtuple("Case", "id x w stride padding dilation groups")


def _c(id, x, w, stride=1, padding=0, dilation=1, groups=1):
    return Case(id, x, w, stride, padding, dilation, groups)


# Forward grid: 1D/2D/3D, stride, padding ('same' with odd and even kernels),
# dilation, groups and depthwise.
FORWARD = [
    _c("1d_s2_p1", (2, 4, 17), (6, 4, 3), stride=2, padding=1),
    _c("1d_same_even_dil", (2, 4, 15), (4, 2, 4), padding="same", dilation=1, groups=2),
    _c("2d_basic", (2, 6, 9, 10), (8, 6, 3, 3), padding=1),
    _c("2d_s12_p10_d21_g2", (2, 6, 11, 10), (8, 3, 3, 3), stride=(1, 2), padding=(1, 0), dilation=(2, 1),
       groups=2),
    _c("2d_depthwise", (2, 8, 11, 11), (8, 1, 3, 3), padding=1, groups=8),
    _c("2d_depthwise_mult2_s2", (2, 4, 12, 9), (8, 1, 5, 5), stride=2, padding=2, groups=4),
    _c("2d_same_odd", (2, 5, 8, 9), (4, 5, 5, 3), padding="same"),
    _c("2d_same_even", (2, 4, 8, 7), (6, 4, 2, 4), padding="same"),
    _c("2d_same_even_dil2", (1, 4, 9, 9), (4, 4, 2, 3), padding="same", dilation=(3, 2)),
    _c("2d_1x1_s2", (3, 16, 10, 10), (8, 16, 1, 1), stride=2),
    _c("3d_s2_p1_g2", (2, 4, 6, 7, 8), (6, 2, 3, 3, 3), stride=2, padding=1, groups=2),
    _c("3d_same_even", (1, 3, 5, 6, 7), (4, 3, 2, 3, 2), padding="same"),
    _c("3d_dil2", (2, 2, 7, 7, 7), (4, 2, 2, 2, 3), dilation=2, padding=(0, 1, 2)),
    _c("2d_large", (8, 32, 32, 32), (64, 32, 3, 3), padding=1),
]

# Backward grids: no asymmetric 'same' (the backward functions refuse it).
BACKWARD = [c for c in FORWARD if c.padding != "same" or c.id == "2d_same_odd"]
BACKWARD.append(_c("3d_large", (4, 16, 12, 12, 12), (16, 16, 3, 3, 3), padding=1))

# Transposed: weight is (C_in, C_out/groups, *kernel); the last entry is output_padding.
TCase = collections.namedtuple("TCase", "id x w stride padding output_padding groups dilation")
TRANSPOSE = [
    TCase("1d_s2_op1", (2, 4, 9), (4, 3, 3), 2, 1, 1, 1, 1),
    TCase("1d_s3_op2_g2", (2, 4, 6), (4, 2, 4), 3, 0, 2, 2, 1),
    TCase("2d_s2_p1_op1", (2, 4, 5, 6), (4, 3, 3, 3), 2, 1, 1, 1, 1),
    TCase("2d_s21_op10_g2", (2, 6, 5, 4), (6, 4, 3, 2), (2, 1), (1, 0), (1, 0), 2, 1),
    TCase("2d_dil2_op1", (2, 3, 5, 5), (3, 5, 3, 3), 1, 1, 1, 1, 2),
    TCase("2d_depthwise_s2", (2, 8, 6, 6), (8, 1, 3, 3), 2, 1, 1, 8, 1),
    TCase("3d_s2_op1", (1, 4, 3, 4, 3), (4, 2, 2, 3, 2), (2, 1, 2), (1, 0, 0), (1, 0, 0), 2, (1, 2, 1)),
    TCase("2d_large", (4, 32, 16, 16), (32, 16, 4, 4), 2, 1, 0, 1, 1),
]

# Fused conv_bias_add_relu.
FUSED = [
    _c("1d", (2, 8, 20), (8, 8, 3), padding=1),
    _c("2d", (2, 8, 10, 12), (16, 8, 3, 3), padding=1),
    _c("2d_s2_g2", (2, 8, 11, 10), (8, 4, 3, 3), stride=2, padding=1, groups=2),
    _c("2d_same_even", (2, 4, 8, 8), (8, 4, 2, 2), padding="same"),
    _c("3d", (1, 4, 6, 6, 6), (8, 4, 3, 3, 3), padding=1),
]


def kwargs(case):
    return dict(stride=case.stride, padding=case.padding, dilation=case.dilation, groups=case.groups)


def ids(cases):
    return [c.id for c in cases]
