"""One torch thread for every generative test: on a shared 2-core machine a second OpenMP
thread waiting on a busy core slows small models down by an order of magnitude."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
