"""A stand-in for Slicer's ``PythonSlicer`` (a CTK AppLauncher) in the way that matters for cancelling a job.

The AppLauncher sets up the environment, starts the real program as its *child* with the same standard output, waits
for it and exits with its status; it does not forward signals to the child. This script does the same: it ignores
SIGTERM (so ``Popen.terminate()`` on it does nothing to the work), and never passes a signal on.

    python fake_applauncher.py PROGRAM [ARGS...]
"""
from __future__ import annotations

import signal
import subprocess
import sys

if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if hasattr(signal, "SIGINT"):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    child = subprocess.Popen(sys.argv[1:])  # inherits stdout/stderr, like the launcher's forwarded channels
    sys.exit(child.wait())
