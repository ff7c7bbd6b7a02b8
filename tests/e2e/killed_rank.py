"""A training child whose rank 1 SIGKILLs itself at the start of step ``AGORA_TEST_KILL_AT_STEP`` (1-based): a rank
lost mid-run, as an OOM kill or a lost node does it. Used by test_training_processes.py in place of
``alignment.launch`` (its ``CHILD_MODULE``)."""

import os
import signal
import sys

from alignment import launch, training

KILL_AT = int(os.environ["AGORA_TEST_KILL_AT_STEP"])
real_step = training._one_step
calls = [0]


def one_step(*args, **kwargs):
    calls[0] += 1
    if os.environ.get("RANK") == "1" and calls[0] == KILL_AT:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_step(*args, **kwargs)


training._one_step = one_step

if __name__ == "__main__":
    sys.exit(launch.main())
