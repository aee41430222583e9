"""The C of the decode loop's elementwise ops (elementwise_cpu.c), built into qlab's CPU shared object
(qlab/kernels/cpu_build.py): sources, headers and entry-point signatures as type codes."""

SOURCES = ("elementwise_cpu.c",)
HEADERS = ("cpu_math.h",)   # shared by every package's C (a vectorisable exp)
SYMBOLS = {
    "qlab_rms_norm": ("p", "i64", "p", "p", "p", "p", "i64", "i64", "f32"),
    "qlab_swiglu": ("p", "p", "p", "i64"),
    "qlab_silu": ("p", "p", "i64"),
}
