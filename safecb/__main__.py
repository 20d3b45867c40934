"""`python -m safecb ...`: the library's command line (safecb/cli.py). The studio's own processes
are `python -m jobs worker` (the job runner) and `python -m ui bench` (the app benchmark)."""

import os

# Sleep, not spin, while waiting for OpenMP work: on a shared or busy machine spinning torch threads
# made a Safe-CB round ~7x slower in the main thread (docs/studio.md, "Threads"). Set it to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
