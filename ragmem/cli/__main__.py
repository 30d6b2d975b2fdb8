"""``python -m ragmem.cli``: the ``ragmem`` command."""

from ragmem.cli import main

main()
