"""A third-party trading app connecting to a broker, with Authlib's OAuth client.

Start the demo platform first (``broker-oauth demo --credentials-json demo.json``), then::

    python examples/third_party_app.py demo.json

The script plays three parts in turn: the app (builds the authorization URL with PKCE),
the partner's consent page (the user approves; the partner asks the broker for a code),
and the app again (exchanges the code and calls the brokerage API with the token).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client


async def connect(credentials: dict[str, str]) -> dict[str, object]:
    base = credentials["base_url"]
    async with httpx.AsyncClient(base_url=base) as broker:
        metadata = (await broker.get("/.well-known/oauth-authorization-server")).json()

    # 1. The app sends the user to the consent page with a PKCE challenge.
    app = AsyncOAuth2Client(
        client_id=credentials["client_id"],
        client_secret=credentials["client_secret"],
        redirect_uri=credentials["redirect_uri"],
        scope="general trading",
        code_challenge_method="S256",
    )
    verifier = generate_token(64)
    url, state = app.create_authorization_url(
        "https://partner.example/consent", code_verifier=verifier
    )
    request = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}

    # 2. The partner's consent page: the user approves, the partner asks for a code.
    async with httpx.AsyncClient(base_url=base) as partner:
        issued = await partner.post(
            "/v1/oauth/authorize",
            auth=(credentials["partner_key"], credentials["partner_secret"]),
            json={
                "client_id": request["client_id"],
                "client_secret": credentials["client_secret"],
                "redirect_uri": request["redirect_uri"],
                "scope": request["scope"],
                "account_id": credentials["paper_account_id"],
                "code_challenge": request["code_challenge"],
                "code_challenge_method": request["code_challenge_method"],
            },
        )
        issued.raise_for_status()
    callback = f"{request['redirect_uri']}?code={issued.json()['code']}&state={state}"

    # 3. Back at the app: exchange the code, then use the token.
    async with app:
        token = await app.fetch_token(
            metadata["token_endpoint"], authorization_response=callback, code_verifier=verifier
        )
        account = (await app.get(f"{base}/v2/account")).json()
    return {"scope": token["scope"], "account": account}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    credentials = json.loads(Path(argv[1]).read_text())
    result = asyncio.run(connect(credentials))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
