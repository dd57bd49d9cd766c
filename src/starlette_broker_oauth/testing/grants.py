"""The contract of a grant store: codes and tokens, atomic under concurrency, announced."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import anyio

from ..models import AccessToken, AuthorizationCode, RefreshToken
from ..security import hash_secret, new_secret
from ..storage.base import (
    CacheReset,
    ClientChanged,
    GrantStore,
    RevocationMessage,
    TokensRevoked,
)
from ._base import CONCURRENCY, Contract, utc_now

__all__ = ["GrantStoreContract"]


class GrantStoreContract(Contract):
    """What every :class:`~.storage.base.GrantStore` must do.

    Fixtures to provide:
        grants: The store under test, empty, ready to use.
    """

    # records

    @staticmethod
    def code(**overrides: Any) -> AuthorizationCode:
        now = utc_now()
        values: dict[str, Any] = {
            "code_hash": hash_secret(new_secret()),
            "client_id": "client-a",
            "account_id": uuid.uuid4(),
            "redirect_uri": "https://app.example/callback",
            "scope": "general trading",
            "issued_at": now,
            "expires_at": now + timedelta(seconds=60),
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256",
        }
        values.update(overrides)
        return AuthorizationCode(**values)

    @staticmethod
    def token(code: AuthorizationCode | None = None, **overrides: Any) -> AccessToken:
        now = utc_now()
        values: dict[str, Any] = {
            "token_hash": hash_secret(new_secret()),
            "client_id": "client-a" if code is None else code.client_id,
            "account_id": uuid.uuid4() if code is None else code.account_id,
            "scope": "general trading",
            "account_live": False,
            "issued_at": now,
            "expires_at": now + timedelta(minutes=15),
            "family_id": None if code is None else code.code_hash,
        }
        values.update(overrides)
        return AccessToken(**values)

    @staticmethod
    def refresh(token: AccessToken, **overrides: Any) -> RefreshToken:
        assert token.family_id is not None
        values: dict[str, Any] = {
            "token_hash": hash_secret(new_secret()),
            "family_id": token.family_id,
            "client_id": token.client_id,
            "account_id": token.account_id,
            "scope": token.scope,
            "account_live": token.account_live,
            "issued_at": token.issued_at,
            "expires_at": token.issued_at + timedelta(days=30),
        }
        values.update(overrides)
        return RefreshToken(**values)

    @staticmethod
    def heard(grants: GrantStore) -> list[RevocationMessage]:
        """Subscribe to the store's announcements; the list fills as they arrive.
        :class:`CacheReset` (forget everything) may come at any time, from a store that
        lost track of others' revocations, and is left out."""
        messages: list[RevocationMessage] = []

        def hear(message: RevocationMessage) -> None:
            if not isinstance(message, CacheReset):
                messages.append(message)

        grants.add_revocation_listener(hear)
        return messages

    async def issued(
        self, grants: GrantStore, *, refresh: bool = False, **code_overrides: Any
    ) -> tuple[AuthorizationCode, AccessToken, RefreshToken | None]:
        """A code redeemed for a token (and a refresh token)."""
        code = self.code(**code_overrides)
        await grants.save_code(code)
        token = self.token(code)
        refresh_token = self.refresh(token) if refresh else None
        assert await grants.redeem_code(
            code.code_hash,
            client_id=code.client_id,
            token=token,
            refresh_token=refresh_token,
            now=utc_now(),
        )
        return code, token, refresh_token

    # codes

    async def test_code_round_trip(self, grants: GrantStore) -> None:
        code = self.code()
        await grants.save_code(code)
        assert await grants.get_code(code.code_hash) == code
        assert await grants.get_code(hash_secret("unknown")) is None

    async def test_redeem_marks_used_and_stores_tokens(self, grants: GrantStore) -> None:
        code, token, refresh = await self.issued(grants, refresh=True)
        stored = await grants.get_code(code.code_hash)
        assert stored is not None and stored.used_at is not None
        assert await grants.get_token(token.token_hash) == token
        assert refresh is not None
        assert await grants.get_refresh_token(refresh.token_hash) == refresh

    async def test_redeem_refuses_and_stores_nothing(self, grants: GrantStore) -> None:
        now = utc_now()
        expired = self.code(issued_at=now - timedelta(minutes=2), expires_at=now)
        for case, code, client_id in (
            ("a code bound to another client", self.code(), "another-client"),
            ("an expired code", expired, expired.client_id),
        ):
            await grants.save_code(code)
            token = self.token(code)
            redeemed = await grants.redeem_code(
                code.code_hash, client_id=client_id, token=token, now=now
            )
            assert not redeemed, f"{case} was redeemed"
            assert await grants.get_token(token.token_hash) is None, f"{case} stored a token"
            stored = await grants.get_code(code.code_hash)
            assert stored is not None, f"{case} is gone"
            assert stored.used_at is None, f"{case} was marked used"
        unknown = self.token()
        assert not await grants.redeem_code(
            hash_secret("unknown"), client_id="client-a", token=unknown, now=now
        )
        assert await grants.get_token(unknown.token_hash) is None

    async def test_concurrent_redemptions_one_wins(self, grants: GrantStore) -> None:
        code = self.code()
        await grants.save_code(code)
        tokens = [self.token(code) for _ in range(CONCURRENCY)]
        results: list[bool] = []

        async def redeem(token: AccessToken) -> None:
            results.append(
                await grants.redeem_code(
                    code.code_hash, client_id=code.client_id, token=token, now=utc_now()
                )
            )

        async with anyio.create_task_group() as tg:
            for token in tokens:
                tg.start_soon(redeem, token)
        assert results.count(True) == 1
        stored = [t for t in tokens if await grants.get_token(t.token_hash) is not None]
        assert len(stored) == 1

    # tokens

    async def test_token_round_trip(self, grants: GrantStore) -> None:
        token = self.token(expires_at=None)
        await grants.save_token(token)
        assert await grants.get_token(token.token_hash) == token
        assert await grants.get_token(hash_secret("unknown")) is None

    async def test_announcements_reach_listeners(self, grants: GrantStore) -> None:
        heard = self.heard(grants)
        more: list[RevocationMessage] = []
        grants.add_revocation_listener(more.append)
        revoked, changed = TokensRevoked(("a" * 64, "b" * 64)), ClientChanged("client-a")
        await grants.announce(revoked)
        await grants.announce(changed)
        assert heard == [revoked, changed]
        assert [m for m in more if not isinstance(m, CacheReset)] == [revoked, changed]

    async def test_revoke_token_once(self, grants: GrantStore) -> None:
        token = self.token()
        await grants.save_token(token)
        now = utc_now()
        was = await grants.revoke_token(token.token_hash, now=now)
        assert was == token  # as it was: not yet revoked
        again = await grants.revoke_token(token.token_hash, now=now + timedelta(seconds=1))
        assert again is not None
        assert again.revoked_at == now, "a second revocation must return the token as it was"
        stored = await grants.get_token(token.token_hash)
        assert stored is not None
        assert stored.revoked_at == now, "a second revocation changed the first's revoked_at"
        assert await grants.revoke_token(hash_secret("unknown"), now=now) is None

    async def test_revoke_grant_ends_it_with_its_pending_codes(self, grants: GrantStore) -> None:
        code, first, refresh = await self.issued(grants, refresh=True)
        assert refresh is not None
        second = self.token(code)
        next_refresh = self.refresh(second)
        assert await grants.rotate_refresh_token(
            refresh.token_hash,
            client_id=code.client_id,
            token=second,
            refresh_token=next_refresh,
            now=utc_now(),
        )
        _, other, _ = await self.issued(grants, refresh=True)
        # Codes not yet exchanged: the same client's for the same account go with the
        # grant; another client's, and another account's, stay.
        pending = self.code(client_id=code.client_id, account_id=code.account_id)
        foreign = self.code(client_id="client-b", account_id=code.account_id)
        elsewhere = self.code(client_id=code.client_id)
        for waiting in (pending, foreign, elsewhere):
            await grants.save_code(waiting)
        revoked = await grants.revoke_grant(
            code.code_hash, account_id=code.account_id, client_id=code.client_id, now=utc_now()
        )
        assert sorted(revoked) == sorted([first.token_hash, second.token_hash])
        for token in (first, second):
            stored = await grants.get_token(token.token_hash)
            assert stored is not None and stored.revoked_at is not None
        stored_refresh = await grants.get_refresh_token(next_refresh.token_hash)
        assert stored_refresh is not None and stored_refresh.revoked_at is not None
        untouched = await grants.get_token(other.token_hash)
        assert untouched is not None and untouched.revoked_at is None
        assert await grants.get_code(pending.code_hash) is None, "a pending code survived"
        assert await grants.get_code(foreign.code_hash) == foreign
        assert await grants.get_code(elsewhere.code_hash) == elsewhere
        used = await grants.get_code(code.code_hash)
        assert used is not None and used.used_at is not None, "the used code is kept (replays)"
        assert not await grants.redeem_code(
            pending.code_hash,
            client_id=pending.client_id,
            token=self.token(pending),
            now=utc_now(),
        )
        assert (
            await grants.revoke_grant(
                code.code_hash,
                account_id=code.account_id,
                client_id=code.client_id,
                now=utc_now(),
            )
            == []
        )

    async def test_revoke_tokens_of_an_account(self, grants: GrantStore) -> None:
        account = uuid.uuid4()
        _, a1, r1 = await self.issued(grants, refresh=True, account_id=account)
        _, b1, _ = await self.issued(grants, account_id=account, client_id="client-b")
        _, elsewhere, _ = await self.issued(grants)
        pending_a = self.code(account_id=account)
        pending_b = self.code(account_id=account, client_id="client-b")
        pending_elsewhere = self.code()
        for waiting in (pending_a, pending_b, pending_elsewhere):
            await grants.save_code(waiting)
        only_b = await grants.revoke_tokens(account_id=account, client_id="client-b", now=utc_now())
        assert only_b == [b1.token_hash]
        assert await grants.get_code(pending_b.code_hash) is None
        assert await grants.get_code(pending_a.code_hash) == pending_a
        still = await grants.get_token(a1.token_hash)
        assert still is not None and still.revoked_at is None
        rest = await grants.revoke_tokens(account_id=account, now=utc_now())
        assert rest == [a1.token_hash]
        assert await grants.get_code(pending_a.code_hash) is None
        assert r1 is not None
        refresh = await grants.get_refresh_token(r1.token_hash)
        assert refresh is not None and refresh.revoked_at is not None
        other = await grants.get_token(elsewhere.token_hash)
        assert other is not None and other.revoked_at is None
        assert await grants.get_code(pending_elsewhere.code_hash) == pending_elsewhere

    async def test_revoke_tokens_of_a_client(self, grants: GrantStore) -> None:
        _, paper, paper_refresh = await self.issued(grants, refresh=True, client_id="client-c")
        live_code = self.code(client_id="client-c")
        await grants.save_code(live_code)
        live = self.token(live_code, account_live=True)
        live_refresh = self.refresh(live)
        assert await grants.redeem_code(
            live_code.code_hash,
            client_id="client-c",
            token=live,
            refresh_token=live_refresh,
            now=utc_now(),
        )
        _, other, _ = await self.issued(grants, client_id="client-d")
        pending = self.code(client_id="client-c")
        await grants.save_code(pending)
        # Only its tokens for live accounts (live approval withdrawn), and its pending
        # codes (which do not say whether their account is live).
        assert await grants.revoke_tokens(client_id="client-c", live_only=True, now=utc_now()) == [
            live.token_hash
        ]
        stored_live_refresh = await grants.get_refresh_token(live_refresh.token_hash)
        assert stored_live_refresh is not None and stored_live_refresh.revoked_at is not None
        stored_paper = await grants.get_token(paper.token_hash)
        assert stored_paper is not None and stored_paper.revoked_at is None
        assert await grants.get_code(pending.code_hash) is None, "a pending code survived"
        pending = self.code(client_id="client-c")
        await grants.save_code(pending)
        # Everything of it (disabled or deleted).
        assert await grants.revoke_tokens(client_id="client-c", now=utc_now()) == [paper.token_hash]
        assert paper_refresh is not None
        stored_refresh = await grants.get_refresh_token(paper_refresh.token_hash)
        assert stored_refresh is not None and stored_refresh.revoked_at is not None
        assert await grants.get_code(pending.code_hash) is None
        untouched = await grants.get_token(other.token_hash)
        assert untouched is not None and untouched.revoked_at is None

    async def test_connections_of_an_account(self, grants: GrantStore) -> None:
        account, now = uuid.uuid4(), utc_now()
        earlier = now - timedelta(hours=2)
        await grants.save_token(self.token(account_id=account, issued_at=earlier))
        await grants.save_token(self.token(account_id=account, scope="data"))
        await grants.save_token(self.token(account_id=account, client_id="expired", expires_at=now))
        revoked = self.token(account_id=account, client_id="revoked")
        await grants.save_token(revoked)
        await grants.revoke_token(revoked.token_hash, now=now)
        # An expired access token whose grant can still be refreshed keeps it connected.
        _, stale, _ = await self.issued(grants, refresh=True, account_id=account, client_id="b")
        await grants.revoke_token(stale.token_hash, now=now)
        await grants.save_token(self.token(client_id="elsewhere"))
        # A used (rotated-out) refresh token connects nothing.
        holder = self.code(client_id="rotated", account_id=account)
        await grants.save_code(holder)
        rotated_token = self.token(holder)
        assert await grants.redeem_code(
            holder.code_hash,
            client_id="rotated",
            token=rotated_token,
            refresh_token=self.refresh(rotated_token, used_at=now),
            now=now,
        )
        await grants.revoke_token(rotated_token.token_hash, now=now)
        connections = await grants.list_connections(account, now=now + timedelta(seconds=1))
        assert [(c.account_id, c.client_id) for c in connections] == [
            (account, "b"),
            (account, "client-a"),
        ]
        b, a = connections
        assert a.scopes == {"general", "trading", "data"}
        assert a.connected_at == earlier
        assert a.last_issued_at > earlier
        assert b.scopes == {"general", "trading"}
        await grants.revoke_tokens(account_id=account, client_id="b", now=now)
        left = await grants.list_connections(account, now=now + timedelta(seconds=1))
        assert [c.client_id for c in left] == ["client-a"]
        assert await grants.list_connections(uuid.uuid4(), now=now) == []

    async def test_a_key_is_used_once(self, grants: GrantStore) -> None:
        now = utc_now()
        key, other = hash_secret(new_secret()), hash_secret(new_secret())
        until = now + timedelta(minutes=10)
        results: list[bool] = []

        async def use() -> None:
            results.append(await grants.use_once(key, now=now, expires_at=until))

        async with anyio.create_task_group() as tg:
            for _ in range(CONCURRENCY):
                tg.start_soon(use)
        assert sorted(results) == [False] * (CONCURRENCY - 1) + [True]
        assert await grants.use_once(other, now=now, expires_at=until) is True
        assert await grants.use_once(key, now=now, expires_at=until) is False, "used twice"
        # Once it has expired, the key is free again.
        later = until + timedelta(seconds=1)
        again = await grants.use_once(key, now=later, expires_at=later + timedelta(minutes=1))
        assert again, "a key whose record expired (expires_at <= now) must be usable again"

    # refresh tokens

    async def test_rotation_uses_the_old_token_once(self, grants: GrantStore) -> None:
        code, _, refresh = await self.issued(grants, refresh=True)
        assert refresh is not None
        pairs = [self.token(code) for _ in range(CONCURRENCY)]
        results: list[bool] = []

        async def rotate(new: AccessToken) -> None:
            results.append(
                await grants.rotate_refresh_token(
                    refresh.token_hash,
                    client_id=code.client_id,
                    token=new,
                    refresh_token=self.refresh(new),
                    now=utc_now(),
                )
            )

        async with anyio.create_task_group() as tg:
            for new in pairs:
                tg.start_soon(rotate, new)
        assert results.count(True) == 1
        old = await grants.get_refresh_token(refresh.token_hash)
        assert old is not None and old.used_at is not None
        stored = [t for t in pairs if await grants.get_token(t.token_hash) is not None]
        assert len(stored) == 1

    async def test_rotation_refuses_and_stores_nothing(self, grants: GrantStore) -> None:
        now = utc_now()
        code, token, _ = await self.issued(grants)
        live = self.refresh(token)
        expired = self.refresh(token, expires_at=now - timedelta(seconds=1))
        revoked = self.refresh(token, revoked_at=now)
        cases = [
            ("another client's refresh token", live, "another-client"),
            ("an expired refresh token", expired, code.client_id),
            ("a revoked refresh token", revoked, code.client_id),
        ]
        for case, old, client_id in cases:
            # Stored the way a redemption stores them: with a code of their own.
            holder = self.code(client_id=code.client_id, account_id=code.account_id)
            await grants.save_code(holder)
            assert await grants.redeem_code(
                holder.code_hash,
                client_id=holder.client_id,
                token=self.token(holder),
                refresh_token=old,
                now=now,
            )
            new = self.token(code)
            rotated = await grants.rotate_refresh_token(
                old.token_hash,
                client_id=client_id,
                token=new,
                refresh_token=self.refresh(new),
                now=now,
            )
            assert not rotated, f"{case} was rotated"
            assert await grants.get_token(new.token_hash) is None, f"{case} stored a token"
        missing = self.token(code)
        assert not await grants.rotate_refresh_token(
            hash_secret("unknown"),
            client_id=code.client_id,
            token=missing,
            refresh_token=self.refresh(missing),
            now=now,
        )
