"""``python -m lobgym``: the ``lobgym`` command line."""

from lobgym.cli import main

main()
