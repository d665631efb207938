#!/usr/bin/env python3
"""A small OAuth 2.0 authorization server for mailroom's tests, on loopback.

It stands in for Microsoft's and Google's identity platforms, which cannot be
reached from a test machine, and speaks the same wire format:

  POST /device_authorization   RFC 8628 §3.1 device authorization request
  POST /token                  RFC 6749 token endpoint: device_code (RFC 8628
                               §3.4), refresh_token, authorization_code with
                               PKCE S256 (RFC 7636)
  GET  /authorize              authorization endpoint; consents at once for
                               login_hint and redirects with a code
  POST /introspect             RFC 7662, what Dovecot's oauth2 passdb asks
  POST /revoke                 RFC 7009

and a test admin API under /admin/ (JSON in, JSON out):

  POST /admin/clients      {client_id, client_secret, access_ttl?, rotate_refresh?,
                            device_interval?, device_ttl?, allowed_scopes?,
                            device_min_interval?}
  POST /admin/approve      {user_code, account, mailbox?, scope?} or {user_code, deny: true}
  POST /admin/issue        {client_id, account, mailbox?, ttl?, scope?}
  POST /admin/expire       {access_token} or {account}
  POST /admin/revoke       {account} or {refresh_token}
  POST /admin/expire_device {user_code}
  GET  /admin/log?client_id=X   token-endpoint calls of that client, oldest first

Tokens are opaque random strings. A grant belongs to the ACCOUNT that signed
in and opens one MAILBOX (the account itself, or for a delegate of a shared
mailbox the mailbox named at approval); introspection answers that mailbox as
`username`, which Dovecot compares with the SASL user.

A client registered with `allowed_scopes` (a space-separated string) gets
`invalid_scope` when it asks for any other; one with `device_min_interval`
answers `slow_down` to device polls closer together than that, whatever
interval it announced (a provider under load does so); `scope` at approval grants less
than was asked (the token response's `scope` says what was granted), as a
tenant whose admin withheld a permission does.

Errors are RFC 6749 JSON: {"error": ..., "error_description": ...}. Client
authentication: client_id + client_secret as form fields or HTTP Basic; a
client registered without a secret is public. Everything is in memory: a
restart forgets every client and grant.

Usage: authserver.py --port PORT [--pidfile FILE]
"""

import argparse
import base64
import hashlib
import json
import os
import secrets
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"

LOCK = threading.Lock()
CLIENTS = {}   # client_id -> dict(secret, access_ttl, rotate, interval, device_ttl)
DEVICES = {}   # device_code -> dict(client_id, user_code, scope, expires, interval,
               #                     last_poll, state, account, mailbox)
USER_CODES = {}  # user_code -> device_code
GRANTS = {}    # refresh_token -> dict(client_id, account, mailbox, scope, revoked)
ACCESS = {}    # access_token -> dict(client_id, account, mailbox, scope, exp, refresh)
CODES = {}     # authorization code -> dict(client_id, redirect_uri, challenge, scope,
               #                            account, mailbox, expires)
LOG = {}       # client_id -> [dict(grant_type, at, status, error?)]


class OAuthError(Exception):
    def __init__(self, error, description, status=400):
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def id_token(account, client_id):
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    now = int(time.time())
    payload = b64url(json.dumps({
        "iss": "mailroom-test-authserver", "aud": client_id, "iat": now,
        "exp": now + 3600, "sub": account, "email": account,
        "preferred_username": account,
    }).encode())
    return f"{header}.{payload}."


def check_scope(cid, scope):
    allowed = CLIENTS[cid]["allowed_scopes"]
    if allowed is None:
        return
    extra = [s for s in scope.split() if s not in allowed]
    if extra:
        raise OAuthError("invalid_scope", f"scope {' '.join(extra)} is not allowed for client {cid}")


def user_code():
    alphabet = "BCDFGHJKLMNPQRSTVWXZ"
    raw = "".join(secrets.choice(alphabet) for _ in range(8))
    return raw[:4] + "-" + raw[4:]


def mint(client_id, account, mailbox, scope, ttl=None, refresh=None):
    """A new access token (and a new grant when `refresh` is None)."""
    client = CLIENTS[client_id]
    if refresh is None:
        refresh = "rt-" + secrets.token_urlsafe(24)
        GRANTS[refresh] = dict(client_id=client_id, account=account, mailbox=mailbox,
                               scope=scope, revoked=False)
    ttl = client["access_ttl"] if ttl is None else ttl
    access = "at-" + secrets.token_urlsafe(24)
    ACCESS[access] = dict(client_id=client_id, account=account, mailbox=mailbox,
                          scope=scope, exp=time.time() + ttl, refresh=refresh)
    return dict(access_token=access, token_type="Bearer", expires_in=int(ttl),
                refresh_token=refresh, scope=scope,
                id_token=id_token(account, client_id))


class Handler(BaseHTTPRequestHandler):
    server_version = "mailroom-test-authserver/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # one line per request on stderr
        sys.stderr.write("authserver: %s %s\n" % (self.address_string(), fmt % args))

    # -- plumbing ---------------------------------------------------------

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def form(self):
        raw = self.body().decode("utf-8", "replace")
        return {k: v[-1] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}

    def json_body(self):
        raw = self.body()
        try:
            value = json.loads(raw or b"{}")
        except ValueError as e:
            raise OAuthError("invalid_request", f"body is not JSON: {e}") from e
        if not isinstance(value, dict):
            raise OAuthError("invalid_request", "body must be a JSON object")
        return value

    def send_json(self, status, value, headers=()):
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def send_error_json(self, e):
        headers = ()
        if e.status == 401:
            headers = (("WWW-Authenticate", 'Basic realm="mailroom-test"'),)
        self.send_json(e.status, {"error": e.error, "error_description": e.description}, headers)

    def client(self, form):
        """Authenticates the client (form fields or HTTP Basic)."""
        cid, secret = form.get("client_id"), form.get("client_secret")
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError as e:
                raise OAuthError("invalid_client", "malformed Basic credentials", 401) from e
            cid, secret = urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(pw)
        if not cid or cid not in CLIENTS:
            raise OAuthError("invalid_client", f"unknown client {cid!r}", 401)
        want = CLIENTS[cid]["secret"]
        if want and secret != want:
            raise OAuthError("invalid_client", "client authentication failed", 401)
        return cid

    # -- routes -----------------------------------------------------------

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        try:
            with LOCK:
                if url.path == "/authorize":
                    return self.authorize(query)
                if url.path == "/admin/log":
                    return self.send_json(200, LOG.get(query.get("client_id", ""), []))
                if url.path == "/healthz":
                    return self.send_json(200, {"ok": True})
            self.send_json(404, {"error": "not_found", "error_description": url.path})
        except OAuthError as e:
            self.send_error_json(e)

    def do_POST(self):
        path = urllib.parse.urlsplit(self.path).path
        routes = {
            "/device_authorization": self.device_authorization,
            "/token": self.token,
            "/introspect": self.introspect,
            "/revoke": self.revoke,
            "/admin/clients": self.admin_clients,
            "/admin/approve": self.admin_approve,
            "/admin/issue": self.admin_issue,
            "/admin/expire": self.admin_expire,
            "/admin/revoke": self.admin_revoke,
            "/admin/expire_device": self.admin_expire_device,
        }
        route = routes.get(path)
        if route is None:
            self.body()
            return self.send_json(404, {"error": "not_found", "error_description": path})
        try:
            with LOCK:
                route()
        except OAuthError as e:
            self.send_error_json(e)

    def device_authorization(self):
        form = self.form()
        cid = self.client(form)
        c = CLIENTS[cid]
        check_scope(cid, form.get("scope", ""))
        code = "dc-" + secrets.token_urlsafe(24)
        uc = user_code()
        DEVICES[code] = dict(client_id=cid, user_code=uc, scope=form.get("scope", ""),
                             expires=time.time() + c["device_ttl"], interval=c["interval"],
                             last_poll=0.0, state="pending", account=None, mailbox=None)
        USER_CODES[uc] = code
        base = f"http://{self.headers.get('Host', '127.0.0.1')}"
        self.send_json(200, dict(
            device_code=code, user_code=uc, verification_uri=f"{base}/device",
            verification_uri_complete=f"{base}/device?user_code={uc}",
            expires_in=int(c["device_ttl"]), interval=int(c["interval"])))

    def token(self):
        form = self.form()
        grant_type = form.get("grant_type", "")
        cid = form.get("client_id")
        try:
            cid = self.client(form)
            answer = self.token_for(cid, grant_type, form)
        except OAuthError as e:
            if cid in CLIENTS:
                LOG.setdefault(cid, []).append(dict(grant_type=grant_type, at=time.time(),
                                                    status=e.status, error=e.error))
            raise
        LOG.setdefault(cid, []).append(dict(grant_type=grant_type, at=time.time(), status=200))
        self.send_json(200, answer)

    def token_for(self, cid, grant_type, form):
        if grant_type == DEVICE_GRANT:
            d = DEVICES.get(form.get("device_code", ""))
            if d is None or d["client_id"] != cid:
                raise OAuthError("invalid_grant", "unknown device_code")
            now = time.time()
            if now >= d["expires"] or d["state"] == "expired":
                raise OAuthError("expired_token", "the device code has expired")
            if d["state"] == "denied":
                raise OAuthError("access_denied", "the user denied the request")
            if d["state"] == "used":
                raise OAuthError("invalid_grant", "the device code was already used")
            # A small grace: clients sleep `interval` between polls, and timers
            # fire a little early or late.
            floor = max(d["interval"], CLIENTS[cid]["device_min_interval"])
            too_soon = now - d["last_poll"] < floor * 0.8
            d["last_poll"] = now
            if d["state"] == "pending":
                if too_soon:
                    d["interval"] += 5
                    raise OAuthError("slow_down", f"poll at most every {int(d['interval'])} s")
                raise OAuthError("authorization_pending", "the user has not signed in yet")
            d["state"] = "used"
            return mint(cid, d["account"], d["mailbox"], d.get("granted") or d["scope"])
        if grant_type == "refresh_token":
            rt = form.get("refresh_token", "")
            g = GRANTS.get(rt)
            if g is None or g["revoked"] or g["client_id"] != cid:
                raise OAuthError("invalid_grant", "the refresh token is invalid, expired or revoked")
            scope = form.get("scope") or g["scope"]
            if not set(scope.split()) <= set(g["scope"].split()):
                raise OAuthError("invalid_scope", "scope exceeds the grant")
            if CLIENTS[cid]["rotate"]:
                g["revoked"] = True
                return mint(cid, g["account"], g["mailbox"], scope)
            return mint(cid, g["account"], g["mailbox"], scope, refresh=rt)
        if grant_type == "authorization_code":
            c = CODES.pop(form.get("code", ""), None)
            if c is None or c["client_id"] != cid or time.time() > c["expires"]:
                raise OAuthError("invalid_grant", "unknown or expired authorization code")
            if form.get("redirect_uri") != c["redirect_uri"]:
                raise OAuthError("invalid_grant", "redirect_uri does not match")
            verifier = form.get("code_verifier", "")
            if c["challenge"] and b64url(hashlib.sha256(verifier.encode()).digest()) != c["challenge"]:
                raise OAuthError("invalid_grant", "PKCE verification failed")
            return mint(cid, c["account"], c["mailbox"], c["scope"])
        raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r}")

    def authorize(self, q):
        cid = q.get("client_id", "")
        if cid not in CLIENTS:
            raise OAuthError("invalid_client", f"unknown client {cid!r}", 401)
        if q.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", "only response_type=code")
        if q.get("code_challenge") and q.get("code_challenge_method") != "S256":
            raise OAuthError("invalid_request", "code_challenge_method must be S256")
        check_scope(cid, q.get("scope", ""))
        account = q.get("login_hint")
        redirect = q.get("redirect_uri", "")
        if not account or not redirect:
            raise OAuthError("invalid_request", "login_hint and redirect_uri are required")
        code = "ac-" + secrets.token_urlsafe(18)
        CODES[code] = dict(client_id=cid, redirect_uri=redirect,
                           challenge=q.get("code_challenge", ""), scope=q.get("scope", ""),
                           account=account, mailbox=q.get("mailbox") or account,
                           expires=time.time() + 300)
        sep = "&" if "?" in redirect else "?"
        target = redirect + sep + urllib.parse.urlencode({"code": code, "state": q.get("state", "")})
        self.send_response(302)
        self.send_header("Location", target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def introspect(self):
        form = self.form()
        a = ACCESS.get(form.get("token", ""))
        # A revoked grant's access tokens were expired with it (kill_grant); a
        # rotated-away refresh token leaves its access tokens valid until exp.
        if a is None or time.time() >= a["exp"]:
            return self.send_json(200, {"active": False})
        self.send_json(200, {"active": True, "username": a["mailbox"], "sub": a["account"],
                             "scope": a["scope"], "client_id": a["client_id"],
                             "exp": int(a["exp"]), "token_type": "Bearer"})

    def revoke(self):
        form = self.form()
        self.client(form)
        token = form.get("token", "")
        if token in GRANTS:
            kill_grant(token)
        elif token in ACCESS:
            ACCESS[token]["exp"] = 0
        self.send_json(200, {})

    # -- admin --------------------------------------------------------------

    def admin_clients(self):
        b = self.json_body()
        cid = b.get("client_id")
        if not cid:
            raise OAuthError("invalid_request", "client_id is required")
        CLIENTS[cid] = dict(secret=b.get("client_secret") or "",
                            access_ttl=float(b.get("access_ttl", 3600)),
                            rotate=bool(b.get("rotate_refresh", False)),
                            interval=float(b.get("device_interval", 1)),
                            device_ttl=float(b.get("device_ttl", 600)),
                            device_min_interval=float(b.get("device_min_interval", 0)),
                            allowed_scopes=(b["allowed_scopes"].split()
                                            if b.get("allowed_scopes") else None))
        self.send_json(200, {"client_id": cid})

    def admin_approve(self):
        b = self.json_body()
        dc = USER_CODES.get(b.get("user_code", ""))
        if dc is None:
            raise OAuthError("invalid_request", "unknown user_code", 404)
        d = DEVICES[dc]
        if b.get("deny"):
            d["state"] = "denied"
        else:
            account = b.get("account")
            if not account:
                raise OAuthError("invalid_request", "account is required")
            d.update(state="approved", account=account, mailbox=b.get("mailbox") or account,
                     granted=b.get("scope"))
        self.send_json(200, {"state": d["state"]})

    def admin_issue(self):
        b = self.json_body()
        cid = b.get("client_id", "")
        if cid not in CLIENTS:
            raise OAuthError("invalid_client", f"unknown client {cid!r}", 404)
        account = b.get("account")
        if not account:
            raise OAuthError("invalid_request", "account is required")
        t = mint(cid, account, b.get("mailbox") or account, b.get("scope", ""),
                 ttl=b.get("ttl"))
        self.send_json(200, t)

    def admin_expire(self):
        b = self.json_body()
        n = 0
        for tok, a in ACCESS.items():
            if tok == b.get("access_token") or a["account"] == b.get("account"):
                a["exp"] = 0
                n += 1
        self.send_json(200, {"expired": n})

    def admin_revoke(self):
        b = self.json_body()
        n = 0
        for rt, g in list(GRANTS.items()):
            if rt == b.get("refresh_token") or g["account"] == b.get("account"):
                kill_grant(rt)
                n += 1
        self.send_json(200, {"revoked": n})

    def admin_expire_device(self):
        b = self.json_body()
        dc = USER_CODES.get(b.get("user_code", ""))
        if dc is None:
            raise OAuthError("invalid_request", "unknown user_code", 404)
        DEVICES[dc]["state"] = "expired"
        self.send_json(200, {"state": "expired"})


def kill_grant(refresh):
    """Revokes a grant: its refresh token and every access token it issued."""
    GRANTS[refresh]["revoked"] = True
    for a in ACCESS.values():
        if a["refresh"] == refresh:
            a["exp"] = 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pidfile")
    args = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    sys.stderr.write(f"authserver: listening on 127.0.0.1:{args.port}\n")
    server.serve_forever()
    if args.pidfile:
        try:
            os.unlink(args.pidfile)
        except OSError:
            pass


if __name__ == "__main__":
    main()
