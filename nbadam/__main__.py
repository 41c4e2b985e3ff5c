"""``python -m nbadam``: the command line of :mod:`nbadam.cli`."""

from .cli import main

raise SystemExit(main())
