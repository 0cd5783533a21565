"""One torch thread per test process: CI has 2 cores, and small nets run slower with two threads that
contend with the env, a server thread or a second process than with one. Every test leaves structlog's
configuration as it found it."""

import pytest
import structlog
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _restore_logging():
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)  # CLI commands configure logging onto CliRunner's (then closed) stream
