"""``python -m starlette_broker_oauth.cli``: the ``broker-oauth`` command."""

from . import main

raise SystemExit(main())
