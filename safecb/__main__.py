"""`python -m safecb ...`. The `worker` command belongs to the studio (it needs the store), so this
entry point hands it to ui.runner; the library modules themselves never import ui/ or db/."""

import sys


def _entry() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        from ui.runner import worker_main

        return worker_main(sys.argv[2:])
    from .cli import main

    return main()


if __name__ == "__main__":
    raise SystemExit(_entry())
