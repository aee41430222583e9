"""The C this package builds into qlab's CPU shared object (qlab/kernels/cpu_build.py): its sources, headers
and the signature of every entry point, as type codes ("p" pointer, "i64", "i32", "f32")."""

SOURCES = ("cpu_recurrent.c",)
HEADERS = ()
SYMBOLS = {
    "qlab_gdn_recurrent": ("p",) * 7 + ("i64",) * 4 + ("f32", "i32"),
    "qlab_conv1d_update": ("p",) * 5 + ("i64",) * 3 + ("i32",),
    "qlab_gdn_decode_layer": ("p",) * 11 + ("i64",) * 6 + ("f32", "i32"),
    "qlab_gdn_gate": ("p",) * 4 + ("i64",) * 2,
}
