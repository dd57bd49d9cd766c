"""The domain core: every rule of who gets a code or token, and every issuance and revocation.

:class:`AuthorizationCore` owns the broker's rules and their sequences - partner and
client authentication, what a client may ask for (response types, redirect URIs, scopes),
who may get a code or token for which account (disabled clients, live-trading approval),
minting codes and tokens, redemption, rotation, and revocation of a token, a grant, a
client's or an account's tokens, each with its audit event. It knows nothing of HTTP or
Authlib and refuses with :class:`~.errors.Refusal` subclasses; the Authlib adapter and
the partner endpoints both call it, and neither repeats a rule.

Revocations reach token caches through one channel: the grant store announces each one
after its transaction commits (``GrantStore.add_revocation_listener``).
"""

from __future__ import annotations

import inspect
import logging
from uuid import UUID

from ..clock import SYSTEM_CLOCK, Clock
from ..errors import (
    ClientAssertionRefused,
    ClientDisabled,
    CodeReplayed,
    InvalidClient,
    InvalidDPoPProof,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    LiveTradingNotApproved,
    PartnerUnauthenticated,
    RefreshTokenReused,
    Refusal,
    StorageUnavailable,
    TokenErrorKind,
    UnauthorizedClient,
    UnknownAccount,
)
from ..events import (
    ClientAuthenticationFailed,
    CodeIssued,
    CodeReplayDetected,
    EventListener,
    OAuthEvent,
    RefreshTokenReuseDetected,
    TokenIssued,
    log_event,
)
from ..models import AccessToken, Account, AuthorizationCode, Client, Partner, RefreshToken
from ..security import hash_secret, secrets_equal
from ..settings import OAuthSettings
from ..storage.base import AccountRepository, ClientRepository, GrantStore, PartnerRepository
from ..telemetry import annotate, record_event
from .assertions import ClientAssertions, may_use_secret
from .dpop import DPoPChecker, DPoPProof, is_thumbprint
from .policy import Policy
from .pushed import PushedRequests
from .records import IssuedCode, IssuedToken, Minter
from .revocation import Revocations

__all__ = ["AuthorizationCore"]

log = logging.getLogger("starlette_broker_oauth")

_NO_SECRET = hash_secret("")


class AuthorizationCore(Policy):
    """The broker's rules over the repositories: its :class:`Policy`, applied to what the
    repositories hold, with minting, redemption, rotation and revocation.

    Parameters:
        settings: Server settings (scopes, lifetimes, live-trading policy).
        clients, accounts, partners, grants: The repositories.
        clock: Where time is read; the system clock by default.
        on_event: The audit listener, a function or coroutine function; a listener that
            raises is logged and changes nothing.
    """

    def __init__(
        self,
        *,
        settings: OAuthSettings,
        clients: ClientRepository,
        accounts: AccountRepository,
        partners: PartnerRepository,
        grants: GrantStore,
        clock: Clock = SYSTEM_CLOCK,
        on_event: EventListener | None = None,
    ) -> None:
        super().__init__(settings)
        self.clients = clients
        self.accounts = accounts
        self.partners = partners
        self.grants = grants
        self.clock = clock
        self.on_event = on_event
        self.mint = Minter(settings, clock)
        self.revocations = Revocations(grants=grants, emit=self.emit, clock=clock)
        self.assertions = ClientAssertions(
            settings=settings, clients=clients, grants=grants, clock=clock
        )
        self.pushed = PushedRequests(settings=settings, clients=clients, grants=grants, clock=clock)
        self.dpop = DPoPChecker(settings=settings, grants=grants, clock=clock)

    # events

    async def emit(self, event: OAuthEvent) -> None:
        """Record ``event`` (the audit log, metrics) and hand it to the listener; its
        failure is logged, never raised."""
        log_event(event)
        record_event(event)
        if self.on_event is None:
            return
        try:
            result = self.on_event(event)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("event listener failed on %s", type(event).__name__)

    # who is calling

    async def authenticate_partner(self, key_id: str | None, secret: str | None) -> Partner:
        """The partner with these HTTP Basic credentials; refuses missing or wrong ones.

        An unknown key id and a wrong secret are refused alike, as clients are
        (:meth:`authenticate_client`)."""
        partner = None if not key_id or secret is None else await self.partners.get_partner(key_id)
        stored = partner.secret_hash if partner is not None and partner.secret_hash else _NO_SECRET
        matches = secrets_equal(hash_secret(secret or ""), stored)
        if partner is None or not matches or not partner.secret_hash:
            raise PartnerUnauthenticated("partner authentication failed")
        annotate({"broker_oauth.partner": partner.partner_id})
        return partner

    async def may_act_for(self, partner: Partner, account_id: UUID) -> bool:
        """Whether ``partner`` may get codes and tokens for the account, and revoke its
        tokens: it owns the account, or nobody does and it is the platform's only
        partner (so a platform with one partner needs no setup)."""
        owner = await self.partners.account_owner(account_id)
        if owner is not None:
            return secrets_equal(owner, partner.partner_id)
        return await self.partners.partner_count() == 1

    async def partner_account(self, partner: Partner, account_id: UUID) -> Account:
        """The account, if the partner may act for it; another partner's account is refused
        exactly like an unknown one."""
        account = None
        if await self.may_act_for(partner, account_id):
            account = await self.accounts.get_account(account_id)
        if account is None:
            raise UnknownAccount()
        return account

    async def partner_client(self, partner: Partner, client_id: str) -> Client:
        """The client, if the partner may use it; an unknown client gets the same refusal."""
        client = None
        if await self.partners.is_client_allowed(partner.partner_id, client_id):
            client = await self.clients.get_client(client_id)
        if client is None:
            raise InvalidClient(InvalidClient.ONE_ANSWER)
        annotate({"oauth.client_id": client.client_id})
        return client

    async def partner_revoke(self, partner: Partner, value: str) -> None:
        """A partner revokes an access token, and with it the whole grant the token came
        from (a token issued directly is its own grant). A token of a client, or an
        account, the partner may not use is left alone and answered like an unknown one,
        so values cannot be probed."""
        token = await self.grants.get_token(hash_secret(value))
        if (
            token is None
            or not await self.partners.is_client_allowed(partner.partner_id, token.client_id)
            or not await self.may_act_for(partner, token.account_id)
        ):
            return
        if token.family_id is None:  # stored before direct tokens named their grant
            await self.revocations.revoke_token(
                token.token_hash, client_id=token.client_id, reason="partner_delete"
            )
        # One transaction: the grant's tokens, and the client's unused codes for the
        # account (none may bring it back).
        await self.revocations.revoke_grant(
            token.family_id or token.token_hash,
            account_id=token.account_id,
            client_id=token.client_id,
            reason="partner_delete",
        )

    async def revoke(self, token: AccessToken | RefreshToken, *, reason: str) -> None:
        """Revoke a token a client presented (``/oauth/revoke``)."""
        await self.revocations.revoke(token, reason=reason)

    async def authenticate_client(
        self,
        client_id: str | None,
        secret: str | None,
        *,
        endpoint: str,
        known: Client | None = None,
    ) -> Client | None:
        """The client these credentials authenticate, or ``None``.

        An unknown client and a wrong secret end alike, in ``None``, after the same
        hash and comparison; what is left is the repository's lookup, found or not
        (``benchmarks/client_auth.py`` measures it). A failure is an audit event.
        ``known`` is the client as this request already read it, if it did.
        """
        if not client_id or not secret:
            return None
        if known is not None and known.client_id == client_id:
            client: Client | None = known
        else:
            client = await self.clients.get_client(client_id)
        stored = client.secret_hash if client is not None else _NO_SECRET
        if secrets_equal(hash_secret(secret), stored) and client is not None:
            if may_use_secret(client, fapi=self.settings.fapi):
                annotate({"oauth.client_id": client.client_id})
                return client
            reason = "secret_not_allowed"  # registered for private_key_jwt only
        else:
            reason = ""
        await self.emit(
            ClientAuthenticationFailed(
                client_id=client_id[:128], endpoint=endpoint, reason=reason, at=self.clock.now()
            )
        )
        return None

    async def authenticate_assertion(
        self,
        assertion_type: str | None,
        assertion: str | None,
        *,
        client_id: str | None,
        endpoint: str,
        known: Client | None = None,
    ) -> Client:
        """The client that signed this ``private_key_jwt`` assertion (RFC 7523 §2.2,
        :mod:`.assertions`); a refusal raises
        :class:`~starlette_broker_oauth.errors.ClientAssertionRefused` after its audit
        event, which names the problem."""
        try:
            client = await self.assertions.authenticate(
                assertion_type, assertion, client_id=client_id, known=known
            )
        except ClientAssertionRefused as refused:
            named = client_id if isinstance(client_id, str) else ""
            await self.emit(
                ClientAuthenticationFailed(
                    client_id=named[:128],
                    endpoint=endpoint,
                    reason=refused.problem.value,
                    at=self.clock.now(),
                )
            )
            raise
        annotate({"oauth.client_id": client.client_id})
        return client

    async def check_grant(
        self, client: Client, account_id: UUID, *, known: Account | None = None
    ) -> Account:
        """The account, if ``client`` may get a code or token for it.

        Refuses a disabled client, an unknown account, and a live account when the client
        is not approved for live trading (unless the platform allows it). ``known`` is the
        account as this request already read it, if it did.
        """
        self.check_active(client)
        if known is None or known.account_id != account_id:
            known = await self.accounts.get_account(account_id)
        return self.check_account(client, known)

    async def _redeemable(self, client: Client, account_id: UUID) -> Account:
        # At the token endpoint, a grant whose client or account no longer qualifies is an
        # invalid grant (RFC 6749 §5.2), whatever the rule that refuses it.
        try:
            return await self.check_grant(client, account_id)
        except Refusal as exc:
            raise InvalidGrant(exc.description) from None

    async def _still_allowed(
        self, client_id: str, account_id: UUID, scope: str, account_live: bool
    ) -> Refusal | None:
        """Whether what was just stored is still allowed, read afresh: an admin change
        (a client disabled, narrowed or deleted, live approval withdrawn, an account made
        live or deleted) commits its change before it revokes, so an issuance that raced
        it either was revoked by it or sees the change here, after its own write."""
        client = await self.clients.get_client(client_id)
        if client is None:
            return InvalidClient(InvalidClient.ONE_ANSWER)
        account = await self.accounts.get_account(account_id)
        if account is None or account.live != account_live:
            return UnknownAccount()
        refused = self.token_refusal(scope, account_live, client)
        if refused is TokenErrorKind.CLIENT_DISABLED:
            return ClientDisabled()
        if refused is not None:  # a narrowed scope, or live approval withdrawn
            if set(scope.split()) <= self.scopes_for(client):
                return LiveTradingNotApproved()
            return InvalidScope("scope is invalid")
        return None

    # issuance

    async def issue_code(
        self,
        client: Client,
        *,
        account_id: UUID,
        redirect_uri: str,
        scope: str,
        code_challenge: str | None = None,
        code_challenge_method: str | None = None,
        via: str,
        account: Account | None = None,
        dpop_jkt: str | None = None,
    ) -> IssuedCode:
        """Mint and store a code for a validated request (RFC 6749 §4.1.2); with
        ``dpop_jkt``, bound to that key (RFC 9449 §10)."""
        if dpop_jkt is not None and not is_thumbprint(dpop_jkt):
            raise InvalidRequest("dpop_jkt must be a JWK SHA-256 thumbprint (RFC 7638)")
        account = await self.check_grant(client, account_id, known=account)
        issued = self.mint.code(
            client,
            account.account_id,
            redirect_uri=redirect_uri,
            scope=scope,
            code_challenge=code_challenge,
            code_challenge_method=code_challenge_method,
            dpop_jkt=dpop_jkt or None,
        )
        record = issued.record
        await self.grants.save_code(record)
        refusal = await self._still_allowed(
            record.client_id, record.account_id, record.scope, account.live
        )
        if refusal is not None:
            await self.grants.revoke_grant(
                record.code_hash,
                account_id=record.account_id,
                client_id=record.client_id,
                now=self.clock.now(),
            )
            raise refusal
        await self.emit(
            CodeIssued(
                client_id=record.client_id,
                account_id=record.account_id,
                scope=record.scope,
                via=via,
                at=record.issued_at,
            )
        )
        return issued

    async def issue_token(
        self, client: Client, *, account_id: UUID, scope: str, account: Account | None = None
    ) -> IssuedToken:
        """Mint and store a token handed to a partner directly (the seed's ``token``).
        Refused for a client whose tokens must be DPoP-bound (or that is under the FAPI
        2.0 profile): they are bound to a key the client proves it holds, and a partner
        holds none."""
        if self.needs_dpop(client):
            raise UnauthorizedClient(
                "this client's tokens are bound to its key (DPoP): they are issued to it at "
                "the token endpoint only"
            )
        account = await self.check_grant(client, account_id, known=account)
        issued = self.mint.token(client, account, scope, family_id=None, refresh=False)
        await self.grants.save_token(issued.record)
        await self._recheck(issued)
        await self._issued(issued, "partner")
        return issued

    async def _recheck(self, issued: IssuedToken, *, redeeming: bool = False) -> None:
        """Revoke what was just issued, and refuse, if an admin change raced it.

        What was issued has committed. If the database cannot be asked again (it went
        away after the commit), the issuance stands: answering 503 would leave a token
        the client never got and, for a code exchange, a used code whose retry reads as a
        replay. The grant was checked before it was written; only an admin change that
        committed and revoked within that same instant could have been missed."""
        record = issued.record
        try:
            refusal = await self._still_allowed(
                record.client_id, record.account_id, record.scope, record.account_live
            )
        except StorageUnavailable:
            log.warning(
                "the database went away after a token was issued to %s; it was not "
                "checked again against admin changes",
                record.client_id,
            )
            return
        if refusal is None:
            return
        await self.revocations.revoke_grant(
            record.family_id or record.token_hash,
            account_id=record.account_id,
            client_id=record.client_id,
            reason="admin_change",
        )
        raise InvalidGrant(refusal.description) if redeeming else refusal

    async def code_for(self, code: str, client: Client) -> AuthorizationCode | None:
        """The client's code with this value, if it can still be redeemed.

        ``None`` for an unknown code or another client's; a used code is a replay, which
        revokes its grant (RFC 9700 §4.5); an expired code is an invalid grant.
        """
        record = await self.grants.get_code(hash_secret(code))
        if record is None or not secrets_equal(record.client_id, client.client_id):
            return None
        if record.used_at is not None:
            await self._code_replayed(record)
        if self.clock.now() >= record.expires_at:
            raise InvalidGrant("The code has expired.")
        return record

    def dpop_binding(
        self, client: Client, proof: DPoPProof | None, bound_to: str | None, what: str
    ) -> str | None:
        """The key the tokens about to be issued are bound to (RFC 9449 §5, §10): the
        proof's, if the request carried one.

        Refuses a request without a proof when the client or the platform requires
        DPoP, or when ``bound_to`` (the code's ``dpop_jkt``, the refresh token's key)
        is set (``invalid_dpop_proof``); and a proof by another key than ``bound_to``
        (``invalid_grant``: the grant is another key's).
        """
        if proof is None:
            if bound_to is not None:
                raise InvalidDPoPProof(f"the {what} is bound to a key: send a DPoP proof")
            if client.dpop_bound_access_tokens or self.settings.dpop_required:
                raise InvalidDPoPProof("this client must send a DPoP proof")
            return None
        if bound_to is not None and not secrets_equal(proof.jkt, bound_to):
            raise InvalidGrant(f"the {what} is bound to another DPoP key")
        return proof.jkt

    async def redeem_code(
        self, code: AuthorizationCode, client: Client, *, dpop: DPoPProof | None = None
    ) -> IssuedToken:
        """Exchange a validated code for tokens: the code is consumed and the tokens stored
        in one atomic step; the loser of a race is treated as a replay. With a DPoP proof
        (``dpop``) the tokens are bound to its key (:meth:`dpop_binding`)."""
        jkt = self.dpop_binding(client, dpop, code.dpop_jkt, "code")
        account = await self._redeemable(client, code.account_id)
        if not set(code.scope.split()) <= self.scopes_for(client):
            # Narrowed since the code was issued.
            raise InvalidGrant("The code holds a scope the client may no longer have.")
        issued = self.mint.token(
            client, account, code.scope, family_id=code.code_hash, dpop_jkt=jkt
        )
        redeemed = await self.grants.redeem_code(
            code.code_hash,
            client_id=client.client_id,
            token=issued.record,
            refresh_token=issued.refresh_record,
            now=issued.record.issued_at,
        )
        if not redeemed:
            await self._code_replayed(code)
        await self._recheck(issued, redeeming=True)
        await self._issued(issued, "authorization_code")
        return issued

    async def refresh_token_for(self, value: str, client: Client) -> RefreshToken | None:
        """The client's live refresh token with this value.

        ``None`` for an unknown, revoked, expired or foreign one; a rotated-out one is
        reuse, which revokes its grant (RFC 9700 §4.14.2).
        """
        record = await self.grants.get_refresh_token(hash_secret(value))
        if record is None or record.revoked_at is not None:
            return None
        if not secrets_equal(record.client_id, client.client_id):
            return None
        if record.used_at is not None:
            await self._refresh_reused(record)
        if record.is_expired(self.clock.now()):
            return None
        return record

    async def rotate_refresh_token(
        self,
        old: RefreshToken,
        client: Client,
        scope: str | None,
        *,
        dpop: DPoPProof | None = None,
    ) -> IssuedToken:
        """A new access and refresh token for ``old``, which is used up atomically.

        ``scope`` may only narrow the grant (RFC 6749 §6). A refresh token bound to a
        key needs a proof by it (RFC 9449 §5); the new pair is bound to the proof's key.
        """
        jkt = self.dpop_binding(client, dpop, old.dpop_jkt, "refresh token")
        account = await self._redeemable(client, old.account_id)
        if not set(old.scope.split()) <= self.scopes_for(client):
            # The client may no longer ask for part of what the grant holds.
            raise InvalidGrant("The grant holds a scope the client may no longer have.")
        granted = old.scope
        if scope:
            if not set(scope.split()) <= set(old.scope.split()):
                raise InvalidScope("scope is invalid")
            granted = " ".join(dict.fromkeys(scope.split()))
        issued = self.mint.token(client, account, granted, family_id=old.family_id, dpop_jkt=jkt)
        assert issued.refresh_record is not None
        rotated = await self.grants.rotate_refresh_token(
            old.token_hash,
            client_id=client.client_id,
            token=issued.record,
            refresh_token=issued.refresh_record,
            now=issued.record.issued_at,
        )
        if not rotated:
            await self._refresh_reused(old)
        await self._recheck(issued, redeeming=True)
        await self._issued(issued, "refresh_token")
        return issued

    async def _issued(self, issued: IssuedToken, grant_type: str) -> None:
        record = issued.record
        await self.emit(
            TokenIssued(
                client_id=record.client_id,
                account_id=record.account_id,
                scope=record.scope,
                grant_type=grant_type,
                token_id=record.token_hash,
                at=record.issued_at,
            )
        )

    async def _code_replayed(self, record: AuthorizationCode) -> None:
        await self.emit(
            CodeReplayDetected(
                client_id=record.client_id, account_id=record.account_id, at=self.clock.now()
            )
        )
        await self.revocations.revoke_grant(
            record.code_hash,
            account_id=record.account_id,
            client_id=record.client_id,
            reason="code_replay",
        )
        log.warning("authorization code replayed; its grant is revoked")
        raise CodeReplayed()

    async def _refresh_reused(self, record: RefreshToken) -> None:
        await self.emit(
            RefreshTokenReuseDetected(
                client_id=record.client_id, account_id=record.account_id, at=self.clock.now()
            )
        )
        await self.revocations.revoke_grant(
            record.family_id,
            account_id=record.account_id,
            client_id=record.client_id,
            reason="refresh_reuse",
        )
        log.warning("refresh token reused; its grant is revoked")
        raise RefreshTokenReused()

    # tokens presented back

    async def find_token(
        self, value: str, *, hint: str | None = None
    ) -> AccessToken | RefreshToken | None:
        """The access or refresh token with this value (``hint`` says which to try first)."""
        token_hash = hash_secret(value)
        if hint == "refresh_token":
            return await self.grants.get_refresh_token(token_hash) or await self.grants.get_token(
                token_hash
            )
        return await self.grants.get_token(token_hash) or await self.grants.get_refresh_token(
            token_hash
        )

    def owned_by(self, token: AccessToken | RefreshToken, client: Client) -> bool:
        """Whether ``token`` was issued to ``client`` (compared in constant time)."""
        return secrets_equal(token.client_id, client.client_id)

    def is_expired(self, token: AccessToken | RefreshToken) -> bool:
        """Whether the token's lifetime has passed."""
        return token.is_expired(self.clock.now())

    async def is_revoked(self, token: AccessToken | RefreshToken) -> bool:
        """Whether the token no longer works: revoked, rotated out, or no longer allowed
        by its client's registration (:meth:`Policy.token_refusal`)."""
        if token.revoked_at is not None:
            return True
        if isinstance(token, RefreshToken) and token.used_at is not None:
            return True
        client = await self.clients.get_client(token.client_id)
        return self.token_refusal(token.scope, token.account_live, client) is not None
