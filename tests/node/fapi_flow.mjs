// A third-party app's whole FAPI 2.0 flow against the demo platform in FAPI mode
// (`broker-oauth demo --fapi`), with panva's OpenID-certified client (openid-client, on
// oauth4webapi): pushed authorization request with private_key_jwt, PKCE and dpop_jkt,
// consent in headless Chromium (playwright-core driving Debian's chromium), the code
// exchanged with a DPoP proof, DPoP-bound calls to a protected route,
// refresh with DPoP, revocation.
//
// Usage: node fapi_flow.mjs CREDENTIALS_JSON
//
// CREDENTIALS_JSON is what `broker-oauth demo --fapi --credentials-json` writes, including
// the FAPI client's private signing key (a demo's). BROKER_OAUTH_CHROMIUM names the
// browser (/usr/bin/chromium by default); the last line printed is a JSON report of the
// steps passed.

import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'

import * as oauth from 'oauth4webapi'
import * as client from 'openid-client'
import { chromium } from 'playwright-core'

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

// --- consent, given by the demo's user in headless Chromium --------------------------------
// The browser follows the authorization URL through the demo's login and hosted consent,
// and is sent back to the app's callback.
const browser = await chromium.launch({
  executablePath: process.env.BROKER_OAUTH_CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox'],
})

async function consentInBrowser(url) {
  const context = await browser.newContext()
  const page = await context.newPage()
  const shown = await page.goto(url.href)
  if (new URL(page.url()).pathname === '/login') {
    await page.fill('#username', creds.username)
    await page.fill('#password', creds.password)
    await Promise.all([page.waitForURL((u) => u.pathname === '/oauth/authorize'), page.click('#log-in')])
  } else {
    assert.equal(shown.status(), 200)
  }
  assert.equal(await page.locator('#client-name').textContent(), 'Demo Trading App')
  // The browser is sent to the app's callback (nothing listens there: the request is
  // what the app would receive).
  const [arrived] = await Promise.all([
    page.waitForRequest((request) => request.url().startsWith(creds.redirect_uri)),
    page.click('#approve'),
  ])
  await context.close()
  return new URL(arrived.url())
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
  const callback = await consentInBrowser(url)
  assert.equal(`${callback.origin}${callback.pathname}`, creds.redirect_uri)
  assert.equal(callback.searchParams.get('state'), state)
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
assert.equal((await fetch(unpushed, { redirect: 'manual' })).status, 400)
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

await browser.close()
console.log(JSON.stringify({ steps }))
