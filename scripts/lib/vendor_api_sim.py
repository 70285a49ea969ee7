#!/usr/bin/env python3
"""A local stand-in for the Oura and WHOOP cloud APIs and Terra's payload storage, for
`scripts/demo` (no internet here).

Serves the recorded API documents of tests/fixtures and the vendors' OAuth token endpoints, under
the real paths. The demo sends its notifications with fresh record ids (a re-run is new data), so
any id is served: the recorded document with the requested id put in (and for WHOOP, a cycle id
derived from the sleep id, whose recovery names that sleep):

  /oura/v2/usercollection/{collection}/{id}     Oura documents (bearer token required)
  /oura/oauth/token                             Oura token endpoint (form body)
  /whoop/v2/activity/sleep/{id}                 WHOOP sleep
  /whoop/v2/cycle/{cycle_id}/recovery           WHOOP recovery of a cycle
  /whoop/oauth/oauth2/token                     WHOOP token endpoint
  /terra/storage/{name}?X-Amz-Expires=N         a Terra payload stored in --storage-dir (no token:
                                                the URL is the credential, like a pre-signed S3
                                                URL); 403 "Request has expired" N s after it was
                                                stored, as S3 answers

Every document is served to the bearer of the access token printed at start (`--tokens-out`
writes the token responses the demo stores with `connections add`). The integration tests use a
fuller simulator (tests/integration/vendor_sim.rs: expiry, single-use refresh tokens, faults).

  vendor_api_sim.py --fixtures tests/fixtures --port 8890 --tokens-out DIR [--storage-dir DIR]
"""

import argparse
import hashlib
import json
import os
import secrets
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def load(fixtures, name):
    with open(os.path.join(fixtures, name), "rb") as handle:
        return handle.read()


def documents(fixtures):
    """The recorded documents, parsed."""
    return {
        "oura_sleep": json.loads(load(fixtures, "oura/api_sleep.json")),
        "whoop_sleep": json.loads(load(fixtures, "whoop/api_sleep.json")),
        "whoop_recovery": json.loads(load(fixtures, "whoop/api_recovery.json")),
    }


def cycle_of(sleep_id):
    """A stable WHOOP cycle id for a sleep id."""
    return int(hashlib.sha256(sleep_id.encode()).hexdigest()[:12], 16) % 10**10


def document(recorded, path, cycles):
    """The document served at `path`, or None."""
    parts = path.split("?")[0].strip("/").split("/")
    match parts:
        case ["oura", "v2", "usercollection", "sleep", record_id]:
            return {**recorded["oura_sleep"], "id": record_id}
        case ["whoop", "v2", "activity", "sleep", sleep_id]:
            cycles[cycle_of(sleep_id)] = sleep_id
            return {**recorded["whoop_sleep"], "id": sleep_id, "cycle_id": cycle_of(sleep_id)}
        case ["whoop", "v2", "cycle", cycle, "recovery"] if cycle.isdigit() and int(cycle) in cycles:
            return {**recorded["whoop_recovery"], "cycle_id": int(cycle), "sleep_id": cycles[int(cycle)]}
    return None


class Handler(BaseHTTPRequestHandler):
    recorded = {}
    cycles = {}  # cycle id -> sleep id, from the sleeps served
    storage_dir = None  # Terra payloads
    access = {}  # vendor -> current access token
    refresh = {}  # vendor -> current (single-use) refresh token

    def reply(self, status, body):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def storage(self):
        """A stored Terra payload, while its URL is valid."""
        url = urlsplit(self.path)
        name = url.path.rsplit("/", 1)[-1]
        path = os.path.join(self.storage_dir or "", name)
        if not self.storage_dir or not name.isalnum() or not os.path.isfile(path):
            return self.reply(404, b"<Error><Code>NoSuchKey</Code></Error>")
        expires = int(parse_qs(url.query).get("X-Amz-Expires", ["0"])[0])
        if time.time() > os.path.getmtime(path) + expires:
            return self.reply(403, b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>")
        with open(path, "rb") as handle:
            return self.reply(200, handle.read())

    def do_GET(self):
        vendor = self.path.split("/")[1]
        if vendor == "terra":
            return self.storage()
        if self.headers.get("authorization") != f"Bearer {self.access.get(vendor)}":
            return self.reply(401, {"message": "Unauthorized"})
        body = document(self.recorded, self.path, self.cycles)
        return self.reply(200, body) if body else self.reply(404, {"message": "Not Found"})

    def do_POST(self):
        vendor = self.path.split("/")[1]
        if self.path not in ("/oura/oauth/token", "/whoop/oauth/oauth2/token"):
            return self.reply(404, {"message": "Not Found"})
        form = parse_qs(self.rfile.read(int(self.headers.get("content-length", 0))).decode())
        if form.get("grant_type") != ["refresh_token"] or form.get("refresh_token") != [self.refresh.get(vendor)]:
            return self.reply(400, {"error": "invalid_grant"})
        return self.reply(200, issue(vendor))

    def log_message(self, *_):
        pass


def issue(vendor):
    """A new access + refresh pair for `vendor`; the old refresh token stops working."""
    Handler.access[vendor] = secrets.token_urlsafe(24)
    Handler.refresh[vendor] = secrets.token_urlsafe(24)
    return {
        "access_token": Handler.access[vendor],
        "refresh_token": Handler.refresh[vendor],
        "expires_in": 86400,
        "token_type": "bearer",
        "scope": "daily personal" if vendor == "oura" else "offline read:recovery read:sleep",
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixtures", required=True)
    parser.add_argument("--port", type=int, default=8890)
    parser.add_argument("--tokens-out", required=True, help="directory for oura.json / whoop.json token responses")
    parser.add_argument("--storage-dir", help="directory of the Terra payloads served under /terra/storage")
    args = parser.parse_args()
    Handler.recorded = documents(args.fixtures)
    Handler.storage_dir = args.storage_dir
    for vendor in ("oura", "whoop"):
        path = os.path.join(args.tokens_out, f"{vendor}.json")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
            json.dump(issue(vendor), handle)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"vendor API simulator on http://127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
