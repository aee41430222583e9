"""The C this package builds into qlab's CPU shared object (qlab/kernels/cpu_build.py): its sources, headers
and the signature of every entry point, as type codes ("p" pointer, "i64", "i32", "f32")."""

SOURCES = ("cpu_kernels.c", "cpu_int8_kernels.c", "cpu_x8_kernels.c")
HEADERS = ("cpu_common.h", "cpu_int8_quant.h")

_GEMM = ("p", "i64", "i64", "p", "i64", "p", "i32")   # (x, M, K, weight, N, out, threads)
# fp32-activation GEMMs (cpu_fp32's GEMV_FORMATS maps formats onto them), then the int8-activation ones
GEMV_ENTRY_POINTS = tuple(f"qlab_{f}_gemm" for f in ("q8_0", "q4_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k",
                                                     "iq4_xs", "fp8", "int4_g128", "mxfp4")) + \
    tuple(f"qlab_{f}_gemm_int8" for f in ("q8_0", "q4_k", "q5_k", "q6_k"))

SYMBOLS = {name: _GEMM for name in GEMV_ENTRY_POINTS}
for _f in ("q4_k", "q6_k"):   # the row-interleaved (x8) layout of cpu_x8_kernels.c
    SYMBOLS[f"qlab_{_f}_x8_gemm_int8"] = _GEMM
    SYMBOLS[f"qlab_{_f}_repack_x8"] = ("p", "i64", "i64", "p", "i32")
SYMBOLS["qlab_x8_gemm_int8_multi"] = ("p", "i64", "i64", "i32", "p", "p", "p", "p", "i32")
for _name in ("qlab_q8_0_dequant", "qlab_q4_k_dequant"):
    SYMBOLS[_name] = ("p", "i64", "i64", "p", "i32")
