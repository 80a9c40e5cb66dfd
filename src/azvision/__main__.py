"""``python -m azvision``: the same command line as the ``azvision`` script."""

from __future__ import annotations

from azvision.cli import main

if __name__ == "__main__":
    main()
