"""One torch thread per test process: CI has 2 cores, and small nets run slower with two threads that
contend with the env, a server thread or a second process than with one."""

import torch

torch.set_num_threads(1)
