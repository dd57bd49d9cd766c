// A third-party app's whole standard flow against a running platform, with panva's
// OpenID-certified client (openid-client, on oauth4webapi), the way an app would write it.
//
// Usage: node standard_flow.mjs CREDENTIALS_JSON client_secret_basic|client_secret_post
//
// CREDENTIALS_JSON is what `broker-oauth demo --credentials-json` writes. Consent is given
// headlessly: the demo's login form and the hosted consent form, posted as a browser would.
// Every step asserts what it received; the last line printed is a JSON report of the steps
// that passed, which the Python test checks is complete.

import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'

import * as oauth from 'oauth4webapi'
import * as client from 'openid-client'

const [credentialsPath, method] = process.argv.slice(2)
const creds = JSON.parse(readFileSync(credentialsPath, 'utf8'))
const steps = []
const step = (name) => steps.push(name)

// Every response the library receives, to check what oauth4webapi does not.
const seen = []
const recordingFetch = async (url, options) => {
  const response = await fetch(url, options)
  const body = await response.clone().text()
  seen.push({ url: String(url), headers: response.headers, body })
  return response
}
const lastFrom = (path) => {
  const hit = seen.findLast((r) => new URL(r.url).pathname === path)
  assert.ok(hit, `no request to ${path}`)
  return hit
}

const authentication = {
  client_secret_basic: client.ClientSecretBasic,
  client_secret_post: client.ClientSecretPost,
}[method]
assert.ok(authentication, `unknown method ${method}`)

// --- discovery (RFC 8414) ------------------------------------------------------------------
const config = await client.discovery(
  new URL(creds.base_url),
  creds.client_id,
  { redirect_uris: [creds.redirect_uri], token_endpoint_auth_method: method },
  authentication(creds.client_secret),
  { algorithm: 'oauth2', execute: [client.allowInsecureRequests] },
)
config[client.customFetch] = recordingFetch
const metadata = config.serverMetadata()
assert.equal(metadata.issuer, creds.base_url)
assert.ok(metadata.token_endpoint_auth_methods_supported.includes(method))
assert.deepEqual(metadata.code_challenge_methods_supported, ['S256'])
assert.equal(metadata.authorization_response_iss_parameter_supported, true)
assert.ok(metadata.grant_types_supported.includes('refresh_token'))
step('discovery')

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
const hiddenFields = (html) => {
  const fields = new URLSearchParams()
  for (const input of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) {
    fields.append(input[1], decodeEntities(input[2]))
  }
  return fields
}
const decodeEntities = (text) =>
  text
    .replaceAll('&quot;', '"')
    .replaceAll('&#x27;', "'")
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replaceAll('&amp;', '&')

async function authorize() {
  const verifier = client.randomPKCECodeVerifier()
  const state = client.randomState()
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: creds.redirect_uri,
    scope: 'general trading',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
  })
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
  const html = await page.text()
  const fields = hiddenFields(html)
  if (!fields.has('account_id')) fields.set('account_id', creds.paper_account_id)
  fields.set('decision', 'approve')
  const answer = await browse(new URL('/oauth/authorize', url), { method: 'POST', body: fields })
  assert.ok([302, 303].includes(answer.status), `consent answered ${answer.status}`)
  const callback = new URL(answer.headers.get('location'))
  assert.equal(`${callback.origin}${callback.pathname}`, creds.redirect_uri)
  assert.equal(callback.searchParams.get('state'), state)
  assert.equal(callback.searchParams.get('iss'), creds.base_url) // RFC 9207
  return { callback, verifier, state }
}

// --- code exchange (RFC 6749 §4.1.3, RFC 7636) ---------------------------------------------
const first = await authorize()
step('authorization')
const tokens = await client.authorizationCodeGrant(config, first.callback, {
  pkceCodeVerifier: first.verifier,
  expectedState: first.state,
})
assert.equal(tokens.token_type.toLowerCase(), 'bearer')
assert.equal(tokens.scope, 'general trading')
assert.ok(tokens.refresh_token)
const exchanged = lastFrom('/oauth/token')
assert.equal(exchanged.headers.get('cache-control'), 'no-store')
assert.match(exchanged.headers.get('content-type'), /^application\/json/)
step('code exchange')

// --- the platform's protected route, through the library's guard ---------------------------
const api = new URL('/v2/account', creds.base_url)
const callApi = async (token) => {
  const response = await client.fetchProtectedResource(config, token, api, 'GET')
  assert.equal(response.status, 200)
  return response.json()
}
const me = await callApi(tokens.access_token)
assert.equal(me.account_id, creds.paper_account_id)
assert.equal(me.client_id, creds.client_id)
step('protected route')

// --- refresh with rotation (RFC 6749 §6, RFC 9700 §4.14.2) ---------------------------------
const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token)
assert.notEqual(refreshed.access_token, tokens.access_token)
assert.ok(refreshed.refresh_token)
assert.notEqual(refreshed.refresh_token, tokens.refresh_token)
assert.equal(refreshed.scope, 'general trading')
assert.equal(lastFrom('/oauth/token').headers.get('cache-control'), 'no-store')
assert.equal((await callApi(refreshed.access_token)).account_id, creds.paper_account_id)
step('refresh')

// --- introspection (RFC 7662) --------------------------------------------------------------
const active = await client.tokenIntrospection(config, refreshed.access_token)
assert.equal(active.active, true)
assert.equal(active.client_id, creds.client_id)
assert.equal(active.scope, 'general trading')
assert.equal(active.token_type, 'Bearer')
assert.match(lastFrom('/oauth/introspect').headers.get('content-type'), /^application\/json/)
step('introspection (active)')

// --- revocation (RFC 7009) -----------------------------------------------------------------
await client.tokenRevocation(config, refreshed.access_token, { token_type_hint: 'access_token' })
assert.equal((await client.tokenIntrospection(config, refreshed.access_token)).active, false)
step('revocation')
step('introspection (revoked)')

const refusedByRoute = async (token) => {
  try {
    await client.fetchProtectedResource(config, token, api, 'GET')
  } catch (error) {
    // oauth4webapi parses the challenge (RFC 6750 §3): a malformed one would throw otherwise.
    assert.ok(error instanceof oauth.WWWAuthenticateChallengeError, String(error))
    assert.equal(error.status, 401)
    assert.equal(error.cause[0].scheme, 'bearer')
    assert.equal(error.cause[0].parameters.error, 'invalid_token')
    return
  }
  assert.fail('the protected route accepted a token it should refuse')
}
await refusedByRoute(refreshed.access_token)
step('protected route refuses a revoked token')

const refusedGrant = async (promise, status, error) => {
  try {
    await promise
  } catch (err) {
    // A refusal with a challenge (RFC 6749 §5.2's 401) surfaces as the challenge; the body
    // is checked the same way either way.
    const known =
      err instanceof client.ResponseBodyError || err instanceof oauth.WWWAuthenticateChallengeError
    assert.ok(known, String(err))
    assert.equal(err.status, status)
    const response = lastFrom('/oauth/token')
    assert.match(response.headers.get('content-type'), /^application\/json/)
    assert.equal(response.headers.get('cache-control'), 'no-store')
    const body = JSON.parse(response.body)
    assert.equal(body.error, error)
    assert.equal(typeof body.error_description, 'string')
    assert.doesNotMatch(body.error_description, /[[\]{}]|'[a-z_]+'/, 'a repr in a protocol message')
    return err
  }
  assert.fail(`expected ${status} ${error}`)
}
await refusedGrant(client.refreshTokenGrant(config, tokens.refresh_token), 400, 'invalid_grant')
step('old refresh token refused')

// --- a replayed code (RFC 6749 §4.1.2, RFC 9700 §4.5) --------------------------------------
const second = await authorize()
const replayed = await client.authorizationCodeGrant(config, second.callback, {
  pkceCodeVerifier: second.verifier,
  expectedState: second.state,
})
await callApi(replayed.access_token)
await refusedGrant(
  client.authorizationCodeGrant(config, second.callback, {
    pkceCodeVerifier: second.verifier,
    expectedState: second.state,
  }),
  400,
  'invalid_grant',
)
// The replay revokes what the code issued.
assert.equal((await client.tokenIntrospection(config, replayed.access_token)).active, false)
await refusedByRoute(replayed.access_token)
step('replayed code refused')

// --- a wrong secret (RFC 6749 §5.2) --------------------------------------------------------
const wrong = new client.Configuration(
  metadata,
  creds.client_id,
  { redirect_uris: [creds.redirect_uri] },
  authentication(`${creds.client_secret}x`),
)
client.allowInsecureRequests(wrong)
wrong[client.customFetch] = recordingFetch
const third = await authorize()
const refusal = await refusedGrant(
  client.authorizationCodeGrant(wrong, third.callback, {
    pkceCodeVerifier: third.verifier,
    expectedState: third.state,
  }),
  401,
  'invalid_client',
)
if (method === 'client_secret_basic') {
  // RFC 6749 §5.2: credentials sent in the Authorization header get the scheme's challenge.
  assert.ok(refusal instanceof oauth.WWWAuthenticateChallengeError)
  assert.equal(refusal.cause[0].scheme, 'basic')
}
step('wrong secret refused')

console.log(JSON.stringify({ method, steps }))
