"""OAuth client credentials in HTTP Basic (RFC 6749 §2.3.1): the client form-encodes its id
and secret before Basic encodes them, and the server decodes them. Clients that do not
encode (Authlib's, requests-oauthlib's) keep working wherever encoding would not change
their credentials. The partner endpoints' Basic credentials are RFC 7617's, read as sent."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote_plus, unquote_plus

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from starlette_broker_oauth import MemoryStorage, OAuthSettings, SQLAlchemyStorage
from starlette_broker_oauth.cli import main

from .conftest import ISSUER, build_platform, pkce_pair

REDIRECT = "https://app.example/cb"
PARTNER_KEY = "broker-partner.one"  # '-' and '.' are escaped by some form encoders


def form_encode(value: str) -> str:
    """RFC 6749 Appendix B's encoding, as Python's standard library does it."""
    return quote_plus(value, safe="")


def form_encode_strict(value: str) -> str:
    """The same encoding as oauth4webapi (openid-client) does it: every character outside
    ``A-Za-z0-9`` escaped, space as ``+`` (WHATWG's ``application/x-www-form-urlencoded``
    leaves ``*-._`` alone; escaping them too is still a valid encoding)."""
    return "".join(
        c
        if c.isascii() and c.isalnum()
        else "+"
        if c == " "
        else "".join(f"%{b:02X}" for b in c.encode())
        for c in value
    )


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# One client per character that form encoding escapes (or, for '+' and '%', reads).
CHARACTERS = {
    "dash": "-",
    "underscore": "_",
    "dot": ".",
    "tilde": "~",
    "space": " ",
    "plus": "+",
    "percent": "%",
    "percent-escape": "%41",
    "colon": ":",
    "e-acute": "é",
    "cjk": "日本",
    "emoji": "📈",
}


@dataclass(frozen=True)
class Registered:
    client_id: str
    secret: str

    @property
    def raw_survives_decoding(self) -> bool:
        """Whether a client that sends the raw values is read as sending them: decoding
        leaves both unchanged, and the id has no ':' to split the Basic pair early."""
        return (
            unquote_plus(self.client_id) == self.client_id
            and unquote_plus(self.secret) == self.secret
            and ":" not in self.client_id
        )


def registered(name: str, c: str) -> Registered:
    return Registered(client_id=f"app{c}{name}", secret=f"s{c}cret{c}" + "k" * 40 + c)


@dataclass
class Registry:
    url: str
    partner: tuple[str, str]
    account: str
    clients: dict[str, Registered]


def cli(url: str, *args: str, stdin: str = "") -> str:
    """``broker-oauth`` in this process; what it prints."""
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stdin", io.StringIO(stdin))
        patch.setattr("sys.stdout", out)
        assert main([*args, "--database-url", url, "--json"]) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """Every client of CHARACTERS registered through the CLI, with a partner allowed to use
    them and an account it owns."""

    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('creds') / 'oauth.db'}"
    cli(url, "db", "upgrade")
    partner = json.loads(cli(url, "partner", "create", "--name", "Broker", "--key-id", PARTNER_KEY))
    account = json.loads(cli(url, "account", "create", "--partner", PARTNER_KEY))["account_id"]
    clients = {}
    for name, c in CHARACTERS.items():
        client = registered(name, c)
        created = json.loads(
            cli(
                url,
                "client",
                "create",
                "--name",
                name,
                "--redirect-uri",
                REDIRECT,
                "--client-id",
                client.client_id,
                "--secret-stdin",
                stdin=client.secret + "\n",
            )
        )
        assert created == {"client_id": client.client_id}
        cli(url, "partner", "allow", PARTNER_KEY, client.client_id)
        clients[name] = client
    return Registry(url, (partner["key_id"], partner["secret"]), account, clients)


async def code_for(http: httpx.AsyncClient, registry: Registry, client: Registered) -> str:
    verifier, challenge = pkce_pair()
    issued = await http.post(
        "/v1/oauth/authorize",
        auth=registry.partner,
        json={
            "client_id": client.client_id,
            "client_secret": client.secret,
            "redirect_uri": REDIRECT,
            "scope": "general",
            "account_id": registry.account,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    )
    assert issued.status_code == 200, issued.text
    code: str = issued.json()["code"]
    return f"{code} {verifier}"


async def exchange(
    http: httpx.AsyncClient, code_and_verifier: str, authorization: str
) -> httpx.Response:
    code, verifier = code_and_verifier.split(" ")
    return await http.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        headers={"Authorization": authorization},
    )


def refused(answer: httpx.Response) -> None:
    assert answer.status_code == 401, answer.text
    assert answer.json() == {
        "error": "invalid_client",
        "error_description": "Client authentication failed.",
    }
    assert answer.headers["www-authenticate"].startswith("Basic ")
    assert answer.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("case", CHARACTERS)
@pytest.mark.parametrize(
    "sent", ["encoded", "encoded-strictly", "raw"], ids=["encoded", "encoded-strictly", "raw"]
)
def test_basic_client_credentials(registry: Registry, case: str, sent: str) -> None:
    """A client registered through the CLI with ``case`` in its id and secret exchanges a
    code, introspects and revokes with its credentials sent in Basic as ``sent``."""
    client = registry.clients[case]
    encode = {"encoded": form_encode, "encoded-strictly": form_encode_strict}.get(sent)
    if encode is None:
        authorization = basic(client.client_id, client.secret)
        accepted = client.raw_survives_decoding
    else:
        authorization = basic(encode(client.client_id), encode(client.secret))
        accepted = True

    async def run() -> None:
        async with SQLAlchemyStorage(registry.url) as storage:
            app = build_platform(storage, OAuthSettings(issuer=ISSUER))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
                answer = await exchange(http, await code_for(http, registry, client), authorization)
                introspected = await http.post(
                    "/oauth/introspect",
                    data={"token": "not-a-token"},
                    headers={"Authorization": authorization},
                )
                if not accepted:
                    refused(answer)
                    refused(introspected)
                    return
                assert answer.status_code == 200, answer.text
                token = answer.json()["access_token"]
                assert introspected.status_code == 200
                assert introspected.json() == {"active": False}
                active = await http.post(
                    "/oauth/introspect",
                    data={"token": token},
                    headers={"Authorization": authorization},
                )
                assert active.json()["active"] is True
                assert active.json()["client_id"] == client.client_id
                revoked = await http.post(
                    "/oauth/revoke",
                    data={"token": token},
                    headers={"Authorization": authorization},
                )
                assert revoked.status_code == 200
                assert (
                    await http.get("/v2/account", headers={"Authorization": f"Bearer {token}"})
                ).status_code == 401

    anyio.run(run)


def test_the_encoders() -> None:
    assert form_encode("a-b_c.d~e f+g%h:é") == "a-b_c.d~e+f%2Bg%25h%3A%C3%A9"
    assert form_encode_strict("a-b_c.d~e f+g%h:é") == ("a%2Db%5Fc%2Ed%7Ee+f%2Bg%25h%3A%C3%A9")


def test_which_raw_credentials_survive() -> None:
    """The cases above cover both outcomes for raw credentials: a lone '%' not followed by
    two hex digits decodes to itself, '%41' does not."""
    survive = {name for name, c in CHARACTERS.items() if registered(name, c).raw_survives_decoding}
    assert survive == {
        "dash",
        "underscore",
        "dot",
        "tilde",
        "space",
        "percent",
        "e-acute",
        "cjk",
        "emoji",
    }


def test_a_secret_too_weak_to_store_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'oauth.db'}"
    assert main(["db", "upgrade", "--database-url", url]) == 0
    capsys.readouterr()
    for secret, said in [
        ("short-secret", "a client secret needs at least 32 characters, not 12"),
        ("x" * 40 + "\x1b[31m", "a client secret cannot have control characters"),
    ]:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("sys.stdin", io.StringIO(secret + "\n"))
            code = main(
                [
                    "client",
                    "create",
                    "--name",
                    "A",
                    "--redirect-uri",
                    REDIRECT,
                    "--secret-stdin",
                    "--database-url",
                    url,
                ]
            )
        out, err = capsys.readouterr()
        assert (code, out) == (1, "")
        assert said in err
    assert main(["client", "list", "--database-url", url]) == 0
    assert capsys.readouterr().out == "no clients\n"


# Generated credentials: any printable id and secret, encoded, authenticate; raw, exactly
# when decoding leaves them as they are.

printable = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=40
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(client_id=printable, secret=printable)
def test_any_credentials_round_trip(client_id: str, secret: str) -> None:
    secret = secret + "k" * 32  # long enough to register

    async def run() -> None:
        storage = MemoryStorage()
        async with storage:
            await storage.create_client(
                name="A", redirect_uris=[REDIRECT], client_id=client_id, client_secret=secret
            )
            app = build_platform(storage, OAuthSettings(issuer=ISSUER))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:

                async def status(authorization: str) -> int:
                    answer = await http.post(
                        "/oauth/introspect",
                        data={"token": "x"},
                        headers={"Authorization": authorization},
                    )
                    return answer.status_code

                for encode in (form_encode, form_encode_strict):
                    assert await status(basic(encode(client_id), encode(secret))) == 200
                raw = Registered(client_id, secret).raw_survives_decoding
                assert await status(basic(client_id, secret)) == (200 if raw else 401)
                wrong = basic(form_encode(client_id), form_encode(secret + "x"))
                assert await status(wrong) == 401

    anyio.run(run)


# The partner endpoints: HTTP Basic as RFC 7617 has it, with no form encoding.


@pytest.mark.parametrize(
    ("encoded", "status"), [(False, 200), (True, 401)], ids=["raw", "form-encoded"]
)
def test_partner_credentials_are_read_as_sent(
    registry: Registry, encoded: bool, status: int
) -> None:
    key, secret = registry.partner
    client = registry.clients["dash"]
    if encoded:
        key, secret = form_encode_strict(key), form_encode_strict(secret)
    if encoded:
        assert key == "broker%2Dpartner%2Eone"

    async def run() -> None:
        async with SQLAlchemyStorage(registry.url) as storage:
            app = build_platform(storage, OAuthSettings(issuer=ISSUER))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
                answer = await http.get(
                    f"/v1/oauth/clients/{client.client_id}",
                    params={"redirect_uri": REDIRECT},
                    headers={"Authorization": basic(key, secret)},
                )
                assert answer.status_code == status, answer.text
                if status == 401:
                    assert answer.json() == {
                        "code": 40110000,
                        "message": "partner authentication failed",
                    }
                else:
                    assert answer.json()["client_id"] == client.client_id

    anyio.run(run)
