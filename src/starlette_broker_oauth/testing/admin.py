"""The contract of a storage backend's admin operations on clients, partners and accounts:
listing, showing, changing and deleting them, and what deleting revokes."""

from __future__ import annotations

import dataclasses
import json
import uuid

import pytest
from joserfc.jwk import ECKey

from ..core.administration import Administrator
from ..errors import RegistrationError
from ..events import AdminChange, OAuthEvent
from ..models import Account, Client, ClientAuthMethod, Partner
from ..storage.admin import AccountDetails, PartnerDetails
from ..storage.base import ClientChanged, ManagedStorage, TokensRevoked
from .grants import GrantStoreContract

__all__ = ["StorageAdminContract"]


class StorageAdminContract(GrantStoreContract):
    """Part of :class:`~.storage.StorageContract`, which provides the fixtures.

    Changes with rules (what deleting revokes, what may not be deleted) are made through
    the core's :class:`~starlette_broker_oauth.core.Administrator`, as the CLI makes them.
    """

    @staticmethod
    def administrator(storage: ManagedStorage) -> tuple[Administrator, list[AdminChange]]:
        """The core's admin service on ``storage``, and the admin events it emits."""
        events: list[AdminChange] = []

        async def emit(event: OAuthEvent) -> None:
            if isinstance(event, AdminChange):
                events.append(event)

        return Administrator(storage, emit=emit), events

    async def test_clients_are_listed_by_id(self, storage: ManagedStorage) -> None:
        assert await storage.list_clients() == []
        ids = [
            (
                await storage.create_client(name=name, redirect_uris=["https://a.example/cb"])
            ).client_id
            for name in ("One", "Two", "Three")
        ]
        listed = await storage.list_clients()
        assert [c.client_id for c in listed] == sorted(ids)
        assert listed == [await storage.get_client(client_id) for client_id in sorted(ids)]

    async def test_update_client_changes_what_is_given(
        self, storage: ManagedStorage, known_client: Client
    ) -> None:
        client_id = known_client.client_id
        renamed = await storage.update_client(client_id, name="Renamed")
        assert renamed == dataclasses.replace(known_client, name="Renamed")
        everything = await storage.update_client(
            client_id,
            description="New",
            url="https://new.example",
            terms_of_use="https://new.example/terms",
            privacy_policy="https://new.example/privacy",
            redirect_uris=["https://new.example/cb"],
            scopes=["data"],
            live_trading_approved=False,
            response_types=["code", "token"],
        )
        expected = dataclasses.replace(
            known_client,
            name="Renamed",
            description="New",
            url="https://new.example",
            terms_of_use="https://new.example/terms",
            privacy_policy="https://new.example/privacy",
            redirect_uris=("https://new.example/cb",),
            scopes=frozenset({"data"}),
            live_trading_approved=False,
            response_types=frozenset({"code", "token"}),
        )
        assert everything == expected
        assert await storage.get_client(client_id) == expected
        # scopes=None is every supported scope; leaving scopes out leaves them.
        assert await storage.update_client(client_id, scopes=None) == dataclasses.replace(
            expected, scopes=None
        )
        assert await storage.update_client(client_id) == dataclasses.replace(expected, scopes=None)
        assert await storage.update_client("no-such-client", name="X") is None
        assert await storage.get_client("no-such-client") is None

    async def test_update_client_refuses_a_redirect_uri_it_may_not_have(
        self, storage: ManagedStorage, known_client: Client
    ) -> None:
        for uris in (["http://app.example/cb"], ["https://app.example/cb#x"], []):
            with pytest.raises(RegistrationError):
                await storage.update_client(
                    known_client.client_id, name="Changed", redirect_uris=uris
                )
        assert await storage.get_client(known_client.client_id) == known_client

    async def test_client_keys_are_stored_and_checked(
        self, storage: ManagedStorage, known_client: Client
    ) -> None:
        """``private_key_jwt``: public keys round-trip; a private key, text that is not
        JSON, or keys-only without keys are refused and change nothing."""
        assert known_client.jwks is None
        assert known_client.token_endpoint_auth_method is ClientAuthMethod.CLIENT_SECRET_BASIC
        key = ECKey.generate_key("P-256", parameters={"kid": "k1"})
        public = {"keys": [key.as_dict(private=False)]}
        for refused in ({"keys": [key.as_dict(private=True)]}, "{not json"):
            with pytest.raises(RegistrationError):
                await storage.update_client(known_client.client_id, jwks=refused)
        with pytest.raises(RegistrationError):
            await storage.update_client(
                known_client.client_id, token_endpoint_auth_method=ClientAuthMethod.PRIVATE_KEY_JWT
            )
        assert await storage.get_client(known_client.client_id) == known_client
        changed = await storage.update_client(
            known_client.client_id,
            jwks=json.dumps(public),
            token_endpoint_auth_method=ClientAuthMethod.PRIVATE_KEY_JWT,
        )
        assert changed is not None
        assert changed == await storage.get_client(known_client.client_id)
        assert changed.token_endpoint_auth_method is ClientAuthMethod.PRIVATE_KEY_JWT
        assert json.loads(changed.jwks or "") == public
        created = await storage.create_client(
            name="Keys", redirect_uris=["https://keys.example/cb"], jwks=public,
            token_endpoint_auth_method=ClientAuthMethod.PRIVATE_KEY_JWT,
        )  # fmt: skip
        stored = await storage.get_client(created.client_id)
        assert stored is not None
        assert stored.token_endpoint_auth_method is ClientAuthMethod.PRIVATE_KEY_JWT
        assert stored.jwks == changed.jwks

    async def test_ids_are_registered_once(self, storage: ManagedStorage) -> None:
        await storage.create_client(
            name="First", redirect_uris=["https://a.example/cb"], client_id="taken"
        )
        with pytest.raises(ValueError, match="already exists"):
            await storage.create_client(
                name="Second", redirect_uris=["https://b.example/cb"], client_id="taken"
            )
        found = await storage.get_client("taken")
        assert found is not None and found.name == "First"
        await storage.create_partner(name="First", key_id="partner-key")
        with pytest.raises(ValueError, match="already exists"):
            await storage.create_partner(name="Second", key_id="partner-key")
        assert await storage.get_partner("partner-key") == Partner(
            partner_id="partner-key", name="First"
        )

    async def test_deleting_a_client_revokes_its_grants(
        self, storage: ManagedStorage, known_client: Client, partner_credentials: tuple[str, str]
    ) -> None:
        client_id, key_id = known_client.client_id, partner_credentials[0]
        assert await storage.allow_partner_client(key_id, client_id)
        code, token, refresh = await self.issued(storage, refresh=True, client_id=client_id)
        assert refresh is not None
        pending = self.code(client_id=client_id)
        await storage.save_code(pending)
        other = await storage.create_client(name="Other", redirect_uris=["https://o.example/cb"])
        kept = self.token(client_id=other.client_id)
        await storage.save_token(kept)
        heard = self.heard(storage)
        admin, events = self.administrator(storage)
        assert await admin.delete_client(client_id) is True
        assert heard == [TokensRevoked((token.token_hash,)), ClientChanged(client_id)]
        assert [(e.subject, e.subject_id, e.action, e.revoked) for e in events] == [
            ("client", client_id, "deleted", 1)
        ]
        assert await storage.get_client(client_id) is None
        assert await storage.get_code(pending.code_hash) is None
        assert await storage.get_code(code.code_hash) is None
        revoked = await storage.get_token(token.token_hash)
        assert revoked is not None and revoked.revoked_at is not None
        gone = await storage.get_refresh_token(refresh.token_hash)
        assert gone is not None and gone.revoked_at is not None
        assert await storage.get_token(kept.token_hash) == kept
        partner = await storage.get_partner_details(key_id)
        assert partner is not None and partner.clients == ()
        assert [c.client_id for c in await storage.list_clients()] == [other.client_id]
        assert await admin.delete_client(client_id) is False
        assert len(heard) == 2 and len(events) == 1

    async def test_partners_are_listed_with_their_clients_and_accounts(
        self, storage: ManagedStorage
    ) -> None:
        assert await storage.list_partners() == []
        first = await storage.create_partner(name="First", key_id="b-first")
        second = await storage.create_partner(name="Second", key_id="a-second")
        clients = sorted(
            [
                (await storage.create_client(name=n, redirect_uris=["https://a.example/cb"]))
                for n in ("X", "Y")
            ],
            key=lambda c: c.client_id,
        )
        for creds in reversed(clients):
            assert await storage.allow_partner_client(first.key_id, creds.client_id)
        for _ in range(2):
            await storage.create_account(partner=first.key_id)
        expected_first = PartnerDetails(
            key_id=first.key_id,
            name="First",
            clients=tuple(c.client_id for c in clients),
            accounts=2,
        )
        expected_second = PartnerDetails(key_id=second.key_id, name="Second")
        assert await storage.list_partners() == [expected_second, expected_first]
        assert await storage.get_partner_details(first.key_id) == expected_first
        assert await storage.get_partner_details(second.key_id) == expected_second
        assert await storage.get_partner_details("no-such-partner") is None

    async def test_update_partner_renames_it(
        self, storage: ManagedStorage, partner_credentials: tuple[str, str]
    ) -> None:
        key_id = partner_credentials[0]
        renamed = await storage.update_partner(key_id, name="Renamed")
        assert renamed == PartnerDetails(key_id=key_id, name="Renamed")
        assert await storage.get_partner(key_id) == Partner(partner_id=key_id, name="Renamed")
        assert await storage.update_partner("no-such-partner", name="X") is None

    async def test_disallowing_a_client(
        self, storage: ManagedStorage, partner_credentials: tuple[str, str], partner_client_id: str
    ) -> None:
        key_id = partner_credentials[0]
        assert await storage.is_client_allowed(key_id, partner_client_id)
        assert await storage.disallow_partner_client(key_id, partner_client_id) is True
        assert not await storage.is_client_allowed(key_id, partner_client_id)
        assert await storage.disallow_partner_client(key_id, partner_client_id) is True
        assert await storage.disallow_partner_client("no-such-partner", partner_client_id) is False
        admin, _ = self.administrator(storage)
        assert await admin.disallow_partner_client(key_id, "no-such-client") is False
        assert await storage.get_client(partner_client_id) is not None

    async def test_deleting_a_partner(
        self, storage: ManagedStorage, partner_credentials: tuple[str, str], partner_client_id: str
    ) -> None:
        key_id = partner_credentials[0]
        admin, events = self.administrator(storage)
        other = await storage.create_partner(name="Other")
        account = await storage.create_account(partner=key_id)
        # An account it owns would pass to the only partner left: it is given away first.
        with pytest.raises(ValueError, match="owns an account"):
            await admin.delete_partner(key_id)
        assert await storage.get_partner_details(key_id) is not None
        assert await storage.give_account(account.account_id, other.key_id)
        assert await admin.delete_partner(key_id) is True
        assert [(e.subject, e.action) for e in events] == [("partner", "deleted")]
        assert await storage.get_partner_details(key_id) is None
        assert await storage.get_partner(key_id) is None
        assert [p.key_id for p in await storage.list_partners()] == [other.key_id]
        assert await storage.get_client(partner_client_id) is not None
        assert await admin.delete_partner(key_id) is False
        # A new partner of the same key id starts with nothing.
        again = await storage.create_partner(name="Again", key_id=key_id)
        assert await storage.get_partner_details(again.key_id) == PartnerDetails(
            key_id=key_id, name="Again"
        )

    async def test_accounts_are_listed_with_their_owners(self, storage: ManagedStorage) -> None:
        assert await storage.list_accounts() == []
        owner = await storage.create_partner(name="Owner")
        other = await storage.create_partner(name="Other")
        owned = [await storage.create_account(partner=owner.key_id) for _ in range(3)]
        loose = await storage.create_account(live=True)
        expected = sorted(
            [
                *(AccountDetails(account_id=a.account_id, partner=owner.key_id) for a in owned),
                AccountDetails(account_id=loose.account_id, live=True),
            ],
            key=lambda a: a.account_id,
        )
        assert await storage.list_accounts() == expected
        assert await storage.list_accounts(partner=owner.key_id) == [
            a for a in expected if a.partner == owner.key_id
        ]
        assert await storage.list_accounts(partner=other.key_id) == []
        with pytest.raises(ValueError, match="unknown partner"):
            await storage.list_accounts(partner="no-such-partner")
        assert await storage.get_account_details(loose.account_id) == AccountDetails(
            account_id=loose.account_id, live=True
        )
        assert await storage.get_account_details(owned[0].account_id) == AccountDetails(
            account_id=owned[0].account_id, partner=owner.key_id
        )
        assert await storage.get_account_details(uuid.uuid4()) is None

    async def test_making_an_account_live_revokes_its_tokens(self, storage: ManagedStorage) -> None:
        account = await storage.create_account()
        token = self.token(account_id=account.account_id)
        elsewhere = self.token()
        for t in (token, elsewhere):
            await storage.save_token(t)
        heard = self.heard(storage)
        admin, events = self.administrator(storage)
        same = await admin.update_account(account.account_id, live=False)
        assert same == AccountDetails(account_id=account.account_id, live=False)
        assert heard == []
        assert await storage.get_token(token.token_hash) == token
        live = await admin.update_account(account.account_id, live=True)
        assert live == AccountDetails(account_id=account.account_id, live=True)
        assert await storage.get_account(account.account_id) == Account(
            account_id=account.account_id, live=True
        )
        assert heard == [TokensRevoked((token.token_hash,))]
        assert [(e.action, e.changes, e.revoked) for e in events] == [
            ("updated", (), 0),
            ("updated", ("live",), 1),
        ]
        revoked = await storage.get_token(token.token_hash)
        assert revoked is not None and revoked.revoked_at is not None
        assert await storage.get_token(elsewhere.token_hash) == elsewhere
        assert await admin.update_account(uuid.uuid4(), live=True) is None

    async def test_deleting_an_account_revokes_its_grants(
        self, storage: ManagedStorage, known_client: Client, partner_credentials: tuple[str, str]
    ) -> None:
        key_id = partner_credentials[0]
        account = await storage.create_account(partner=key_id)
        code, token, refresh = await self.issued(
            storage, refresh=True, client_id=known_client.client_id, account_id=account.account_id
        )
        assert refresh is not None
        pending = self.code(client_id=known_client.client_id, account_id=account.account_id)
        await storage.save_code(pending)
        heard = self.heard(storage)
        admin, _ = self.administrator(storage)
        assert await admin.delete_account(account.account_id) is True
        assert heard == [TokensRevoked((token.token_hash,))]
        assert await storage.get_account(account.account_id) is None
        assert await storage.get_account_details(account.account_id) is None
        assert await storage.get_code(pending.code_hash) is None
        assert await storage.get_code(code.code_hash) is None
        revoked = await storage.get_token(token.token_hash)
        assert revoked is not None and revoked.revoked_at is not None
        gone = await storage.get_refresh_token(refresh.token_hash)
        assert gone is not None and gone.revoked_at is not None
        partner = await storage.get_partner_details(key_id)
        assert partner is not None and partner.accounts == 0
        assert await storage.get_client(known_client.client_id) == known_client
        assert await admin.delete_account(account.account_id) is False
        assert heard == [TokensRevoked((token.token_hash,))]
