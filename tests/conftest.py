import os

import pytest

# The Triton backend runs on CPU tensors only under the interpreter. `triton.jit` reads this when a
# kernel module is imported, so it is set here, before any test module imports attrstream.kernels.
os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="session")
def default_model(tmp_path_factory):
    """The demo's real default recipe, trained once per session into a private cache (~45 s CPU).

    Returns ``(model, TrainInfo)``; ``info.cache_path.parent`` is the cache folder that demo
    subprocesses reuse through ``ATTRSTREAM_CACHE``.
    """
    from attrstream.engine.demo.train import load_or_train

    return load_or_train(tmp_path_factory.mktemp("attrstream-cache"), verbose=False)
