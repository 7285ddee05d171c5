import pytest

from tests.kernels._launches import LaunchRecorder


@pytest.fixture(scope="session")
def launch_recorder():
    """Every kernel launch of the session, checked against ``compile_targets()`` (see ``_launches``)."""
    with pytest.MonkeyPatch.context() as patcher:
        recorder = LaunchRecorder()
        recorder.install(patcher)
        yield recorder


@pytest.fixture(autouse=True)
def launches_are_compile_targets(launch_recorder):
    """Fails the test whose launches chose a specialization ``test_compile`` does not build."""
    seen = len(launch_recorder.uncovered)
    yield
    new = launch_recorder.uncovered[seen:]
    assert not new, (f"{len(new)} launches with a specialization no compile_targets() entry covers:\n"
                     + "\n".join(map(str, dict.fromkeys(map(str, new)))))
