// A third-party app's whole FAPI 2.0 flow against the demo platform in FAPI mode
// (`broker-oauth demo --fapi`), with panva's OpenID-certified client (openid-client, on
// oauth4webapi): pushed authorization request with private_key_jwt, PKCE and dpop_jkt,
// consent, the code exchanged with a DPoP proof, DPoP-bound calls to a protected route,
// refresh with DPoP, revocation.
//
// Usage: node fapi_flow.mjs CREDENTIALS_JSON
//
// CREDENTIALS_JSON is what `broker-oauth demo --fapi --credentials-json` writes, including
// the FAPI client's private signing key (a demo's). Consent is given headlessly, the way
// standard_flow.mjs gives it; the last line printed is a JSON report of the steps passed.

import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'

import * as oauth from 'oauth4webapi'
import * as client from 'openid-client'

const [credentialsPath] = process.argv.slice(2)
const creds = JSON.parse(readFileSync(credentialsPath, 'utf8'))
const steps = []
const step = (name) => steps.push(name)

const seen = []
const recordingFetch = async (url, options) => {
  const response = await fetch(url, options)
  const body = await response.clone().text()
  seen.push({ url: String(url), status: response.status, headers: response.headers, body })
  return response
}

// --- the client's keys: a signing key registered with the platform, a fresh DPoP key --------
const signingJwk = creds.client_private_jwk
const signingKey = await crypto.subtle.importKey(
  'jwk',
  signingJwk,
  { name: 'ECDSA', namedCurve: 'P-256' },
  false,
  ['sign'],
)
const dpopKeys = await client.randomDPoPKeyPair('ES256')
const dpopPublic = await crypto.subtle.exportKey('jwk', dpopKeys.publicKey)
// RFC 7638 thumbprint of the DPoP key: the code is bound to it at PAR (dpop_jkt).
const thumbprint = createHash('sha256')
  .update(JSON.stringify({ crv: dpopPublic.crv, kty: dpopPublic.kty, x: dpopPublic.x, y: dpopPublic.y }))
  .digest('base64url')

// --- discovery (RFC 8414) ------------------------------------------------------------------
const config = await client.discovery(
  new URL(creds.base_url),
  creds.client_id,
  { redirect_uris: [creds.redirect_uri], token_endpoint_auth_method: 'private_key_jwt' },
  client.PrivateKeyJwt({ key: signingKey, kid: signingJwk.kid }),
  { algorithm: 'oauth2', execute: [client.allowInsecureRequests] },
)
config[client.customFetch] = recordingFetch
const metadata = config.serverMetadata()
assert.equal(metadata.issuer, creds.base_url)
assert.ok(metadata.pushed_authorization_request_endpoint)
assert.equal(metadata.require_pushed_authorization_requests, true)
assert.ok(metadata.token_endpoint_auth_methods_supported.includes('private_key_jwt'))
assert.ok(!metadata.token_endpoint_auth_methods_supported.includes('client_secret_basic'))
assert.ok(metadata.token_endpoint_auth_signing_alg_values_supported.includes('ES256'))
assert.ok(metadata.dpop_signing_alg_values_supported.includes('ES256'))
assert.deepEqual(metadata.code_challenge_methods_supported, ['S256'])
step('discovery')

const dpop = client.getDPoPHandle(config, dpopKeys)

// --- consent, as the demo's user would give it ---------------------------------------------
const cookies = new Map()
const browse = async (url, init = {}) => {
  const headers = new Headers(init.headers)
  if (cookies.size) headers.set('cookie', [...cookies].map(([k, v]) => `${k}=${v}`).join('; '))
  const response = await fetch(url, { ...init, headers, redirect: 'manual' })
  for (const line of response.headers.getSetCookie()) {
    const [pair] = line.split(';')
    const at = pair.indexOf('=')
    cookies.set(pair.slice(0, at), pair.slice(at + 1))
  }
  return response
}
const decodeEntities = (text) =>
  text
    .replaceAll('&quot;', '"')
    .replaceAll('&#x27;', "'")
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replaceAll('&amp;', '&')
const hiddenFields = (html) => {
  const fields = new URLSearchParams()
  for (const input of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) {
    fields.append(input[1], decodeEntities(input[2]))
  }
  return fields
}

async function authorize() {
  const verifier = client.randomPKCECodeVerifier()
  const state = client.randomState()
  // PAR (RFC 9126), authenticated with private_key_jwt; the code bound to the DPoP key.
  const url = await client.buildAuthorizationUrlWithPAR(config, {
    redirect_uri: creds.redirect_uri,
    scope: 'general trading',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    dpop_jkt: thumbprint,
  })
  assert.deepEqual([...url.searchParams.keys()].sort(), ['client_id', 'request_uri'])
  assert.match(url.searchParams.get('request_uri'), /^urn:ietf:params:oauth:request_uri:/)
  let page = await browse(url)
  if (page.status === 303 || page.status === 302) {
    const login = new URL(page.headers.get('location'), url)
    assert.equal(login.pathname, '/login')
    const form = await browse(login)
    assert.equal(form.status, 200)
    const fields = hiddenFields(await form.text())
    fields.set('username', creds.username)
    fields.set('password', creds.password)
    const loggedIn = await browse(new URL('/login', url), { method: 'POST', body: fields })
    assert.equal(loggedIn.status, 303)
    page = await browse(new URL(loggedIn.headers.get('location'), url))
  }
  assert.equal(page.status, 200)
  const fields = hiddenFields(await page.text())
  if (!fields.has('account_id')) fields.set('account_id', creds.paper_account_id)
  fields.set('decision', 'approve')
  const answer = await browse(new URL('/oauth/authorize', url), { method: 'POST', body: fields })
  assert.ok([302, 303].includes(answer.status), `consent answered ${answer.status}`)
  const callback = new URL(answer.headers.get('location'))
  assert.equal(`${callback.origin}${callback.pathname}`, creds.redirect_uri)
  assert.equal(callback.searchParams.get('iss'), creds.base_url) // RFC 9207
  return { callback, verifier, state }
}

const first = await authorize()
step('pushed authorization request and consent')

// A front-channel request without PAR is refused.
const unpushed = client.buildAuthorizationUrl(config, {
  redirect_uri: creds.redirect_uri,
  scope: 'general',
  code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
  code_challenge_method: 'S256',
})
assert.equal((await browse(unpushed)).status, 400)
step('front channel without PAR refused')

// --- code exchange with a DPoP proof (RFC 9449 §5) ------------------------------------------
const tokens = await client.authorizationCodeGrant(
  config,
  first.callback,
  { pkceCodeVerifier: first.verifier, expectedState: first.state },
  undefined,
  { DPoP: dpop },
)
assert.equal(tokens.token_type.toLowerCase(), 'dpop')
assert.ok(tokens.refresh_token)
step('code exchange (private_key_jwt, DPoP)')

// --- DPoP-bound calls to the platform's protected route -------------------------------------
const api = new URL(creds.protected_url ?? '/v2/account', creds.base_url)
const callApi = async (token) => {
  const response = await client.fetchProtectedResource(config, token, api, 'GET', undefined, undefined, {
    DPoP: dpop,
  })
  assert.equal(response.status, 200)
  return response.json()
}
assert.equal((await callApi(tokens.access_token)).account_id, creds.paper_account_id)
step('protected route with DPoP')

// The same token presented as a bearer token is refused.
const asBearer = await fetch(api, { headers: { authorization: `Bearer ${tokens.access_token}` } })
assert.equal(asBearer.status, 401)
step('bound token refused as Bearer')

// --- refresh with DPoP ----------------------------------------------------------------------
const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token, undefined, { DPoP: dpop })
assert.equal(refreshed.token_type.toLowerCase(), 'dpop')
assert.notEqual(refreshed.access_token, tokens.access_token)
await callApi(refreshed.access_token)
step('refresh with DPoP')

// --- revocation (RFC 7009), after which the route refuses ------------------------------------
await client.tokenRevocation(config, refreshed.access_token, { token_type_hint: 'access_token' })
try {
  await client.fetchProtectedResource(config, refreshed.access_token, api, 'GET', undefined, undefined, {
    DPoP: dpop,
  })
  assert.fail('the protected route accepted a revoked token')
} catch (error) {
  assert.ok(error instanceof oauth.WWWAuthenticateChallengeError, String(error))
  assert.equal(error.status, 401)
  assert.equal(error.cause[0].scheme, 'dpop')
  assert.equal(error.cause[0].parameters.error, 'invalid_token')
}
step('revocation')

console.log(JSON.stringify({ steps }))
