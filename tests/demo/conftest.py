import pytest

from attrstream.engine.demo.train import load_or_train


@pytest.fixture(scope="session")
def default_model(tmp_path_factory):
    """The real default recipe, trained once per session into a private cache (about 30 s on 2 cores)."""
    return load_or_train(tmp_path_factory.mktemp("attrstream-cache"), verbose=False)
