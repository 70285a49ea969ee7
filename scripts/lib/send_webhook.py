#!/usr/bin/env python3
"""Sign a webhook body the way its vendor does and POST it to the ingress (stdlib only).

    send_webhook.py --vendor terra --url http://127.0.0.1:8889 FILE [FILE...]

Secrets come from the environment, never from arguments: TERRA_SIGNING_SECRET,
OURA_CLIENT_SECRET, WHOOP_CLIENT_SECRET; Apple Health uses APPLE_HEALTH_TOKEN as a bearer token.
The file bytes are sent unchanged (signatures cover the exact bytes). Prints one line per file:
status and the ingress's JSON answer.
"""
import argparse
import json
import base64
import hashlib
import hmac
import os
import re
import sys
import time
import urllib.error
import urllib.request
import uuid


def sign(vendor, body):
    """The vendor's signature headers for `body`, signed now."""
    if vendor == "terra":
        secret = os.environ["TERRA_SIGNING_SECRET"].encode()
        t = str(int(time.time()))
        mac = hmac.new(secret, t.encode() + b"." + body, hashlib.sha256).hexdigest()
        return {"terra-signature": f"t={t},v1={mac}", "x-terra-trace-id": str(uuid.uuid4())}
    if vendor == "oura":
        secret = os.environ["OURA_CLIENT_SECRET"].encode()
        t = str(int(time.time()))
        mac = hmac.new(secret, t.encode() + body, hashlib.sha256).hexdigest().upper()
        return {"x-oura-signature": mac, "x-oura-timestamp": t}
    if vendor == "whoop":
        secret = os.environ["WHOOP_CLIENT_SECRET"].encode()
        t = str(int(time.time() * 1000))
        mac = base64.b64encode(hmac.new(secret, t.encode() + body, hashlib.sha256).digest()).decode()
        return {"x-whoop-signature": mac, "x-whoop-signature-timestamp": t}
    if vendor == "apple-health":
        return {"authorization": "Bearer " + os.environ["APPLE_HEALTH_TOKEN"]}
    raise SystemExit(f"unknown vendor {vendor}")


ID_FIELDS = re.compile(rb'("(?:summary_id|object_id|id|trace_id)":\s*")([^"]+)(")')


def as_new(body):
    """The same measurements as a new vendor record: fresh record and delivery ids, so a re-run
    of the demo is not (rightly) dropped as a re-delivery. Dates and values are unchanged."""
    return ID_FIELDS.sub(lambda m: m.group(1) + str(uuid.uuid4()).encode() + m.group(3), body)


def summary(answer):
    """`accepted  trace 5c9a2226…` from the ingress's JSON answer (`error: detail` for a refusal)."""
    try:
        body = json.loads(answer)
    except ValueError:
        return answer
    if "error" in body:
        return f"{body['error']}: {body.get('detail', '')}"
    trace = body.get("trace_id", "")
    return f"{body.get('status', '?'):9} trace {trace}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vendor", required=True, choices=["terra", "oura", "whoop", "apple-health"])
    parser.add_argument("--url", default="http://127.0.0.1:8889")
    parser.add_argument("--as-new", action="store_true", help="send with fresh record ids (see as_new)")
    parser.add_argument("--json", action="store_true", help="print the ingress's JSON answer as it came")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    failed = 0
    for path in args.files:
        with open(path, "rb") as handle:
            body = handle.read()
        if args.as_new:
            body = as_new(body)
        headers = {"content-type": "application/json", **sign(args.vendor, body)}
        request = urllib.request.Request(f"{args.url}/webhooks/{args.vendor}", data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                status, answer = response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            status, answer = error.code, error.read().decode()
            failed += 1
        print(f"{args.vendor:12} {os.path.basename(path):34} -> {status} {answer if args.json else summary(answer)}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
