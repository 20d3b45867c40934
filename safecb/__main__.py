"""`python -m safecb ...`. Two commands belong to the studio, because they need the store and the app:
`worker` (ui.runner) and `bench app` (ui.bench_app). This entry point hands them over; the library
modules themselves never import ui/ or db/."""

import os
import sys

# Sleep, not spin, while waiting for OpenMP work: on a shared or busy machine spinning torch threads
# made a Safe-CB round ~7x slower in the main thread (docs/studio.md, "Threads"). Set it to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _entry() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        from ui.runner import worker_main

        return worker_main(sys.argv[2:])
    if sys.argv[1:3] == ["bench", "app"]:
        from ui.bench_app import main as bench_app_main

        return bench_app_main(sys.argv[3:])
    from .cli import main

    return main()


if __name__ == "__main__":
    raise SystemExit(_entry())
