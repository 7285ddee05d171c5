import os

# The Triton backend runs on CPU tensors only under the interpreter; set it before triton imports.
os.environ.setdefault("TRITON_INTERPRET", "1")
