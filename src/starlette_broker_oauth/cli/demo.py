"""``broker-oauth demo``: the demo brokerage platform on SQLite."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio

from .output import CommandError

__all__ = ["run_demo"]


def run_demo(args: argparse.Namespace) -> int:
    """Seed the demo database, print how to use it, and serve until stopped."""
    import copy
    import secrets
    from datetime import timedelta

    try:
        import uvicorn
        from uvicorn.config import LOGGING_CONFIG
    except ImportError:
        raise CommandError(
            "broker-oauth demo needs uvicorn: pip install 'starlette-broker-oauth[demo]'"
        ) from None

    from ..settings import OAuthSettings
    from ..storage.sqlalchemy import SQLAlchemyStorage
    from ..web.demo import build_platform, seed
    from .database import open_or_explain

    base_url = f"http://{args.host}:{args.port}"
    # Hour-long access tokens and refresh tokens, as an app that stays connected needs.
    # --fapi: the FAPI 2.0 profile (PAR, private_key_jwt, DPoP-bound tokens).
    settings = OAuthSettings(
        issuer=base_url,
        access_token_lifetime=timedelta(hours=1),
        refresh_token_lifetime=timedelta(days=30),
        fapi=args.fapi,
    )
    database_url = f"sqlite+aiosqlite:///{os.path.abspath(args.database)}"
    password = secrets.token_urlsafe(9)

    async def prepare() -> dict[str, Any]:
        storage = SQLAlchemyStorage(database_url)
        await open_or_explain(storage)
        try:
            seeded = await seed(storage, base_url=base_url, password=password, fapi=args.fapi)
            return seeded.as_dict()
        finally:
            await storage.close()

    credentials = anyio.run(prepare)
    path: Path | None = args.credentials_json
    if path is not None:
        path.write_text(json.dumps(credentials, indent=2) + "\n")
        path.chmod(0o600)
    if args.json:
        print(json.dumps(credentials))
    else:
        _banner(args, credentials, path)
    sys.stdout.flush()
    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config["filters"] = {"hide_tokens": {"()": "starlette_broker_oauth.web.demo.HideTokens"}}
    log_config["loggers"]["uvicorn.access"]["filters"] = ["hide_tokens"]
    app = build_platform(SQLAlchemyStorage(database_url), settings, password=password)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", log_config=log_config)
    return 0


def _banner(args: argparse.Namespace, credentials: dict[str, Any], path: Path | None) -> None:
    import shlex

    from ..routes import METADATA

    base_url = credentials["base_url"]
    print("Demo Brokerage, an OAuth 2.0 authorization server made with starlette-broker-oauth")
    print(f"  open:      {base_url}")
    print(f"  log in as: {credentials['username']} / {credentials['password']}")
    print(f"  database:  {args.database}")
    print(
        "  admin:     export BROKER_OAUTH_DATABASE_URL="
        f"{shlex.quote('sqlite+aiosqlite:///' + str(Path(args.database).resolve()))}"
    )
    print("Credentials:")
    for key, value in credentials.items():
        print(f"  {key}: {value}")
    print(f"  metadata: {base_url}{METADATA.path}")
    python = os.path.relpath(sys.executable)
    if python.startswith(".."):
        python = sys.executable
    if path is None:
        print("Next: restart with --credentials-json demo.json to run the example trading app.")
    else:
        print("Next, in a second terminal, run the third-party trading app:")
        print(f"  {shlex.quote(python)} examples/third_party_app.py {shlex.quote(str(path))}")
        print(f"then open {credentials['redirect_uri'].removesuffix('/callback')} and connect.")
        print("(Restarting the demo re-keys its client: restart the app too.)")
