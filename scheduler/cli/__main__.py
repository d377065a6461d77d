"""``python -m scheduler.cli``: the same entry point as the ``maintd`` console script."""

from scheduler.cli import main

main()
