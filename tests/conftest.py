import os

# The Triton backend runs on CPU tensors only under the interpreter. `triton.jit` reads this when a
# kernel module is imported, so it is set here, before any test module imports attrstream.kernels.
os.environ.setdefault("TRITON_INTERPRET", "1")
