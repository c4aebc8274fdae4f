#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A registry front that demands bearer tokens, for tests of the token flow.

Listens on 127.0.0.1:PORT. /token hands out a token for Basic credentials
USER:PASS (the distribution token protocol: realm, service, scope); /v2/...
requests must carry "Authorization: Bearer <that token>" and are then passed
to the registry at UPSTREAM (host:port), answers copied back unchanged;
without it they get 401 and a Bearer challenge. Every request is logged on
stderr with the scope asked for, so tests can check the flow.
"""
import argparse
import base64
import http.client
import http.server
import json
import socketserver
import sys
import urllib.parse

TOKEN = "slimfs-test-token-7c3f"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--creds", required=True, help="USER:PASS")
    args = ap.parse_args()
    want_basic = "Basic " + base64.b64encode(args.creds.encode()).decode()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            sys.stderr.write("%s %s\n" % (self.requestline, fmt % a))

        def reply(self, status, body=b"", headers=()):
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def handle_any(self):
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/token":
                q = urllib.parse.parse_qs(url.query)
                sys.stderr.write("token asked: service=%s scope=%s\n" % (
                    q.get("service"), q.get("scope")))
                if self.headers.get("Authorization") != want_basic:
                    self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}')
                    return
                self.reply(200, json.dumps({"token": TOKEN}).encode(),
                           [("Content-Type", "application/json")])
                return
            if self.headers.get("Authorization") != "Bearer " + TOKEN:
                realm = "http://127.0.0.1:%d/token" % args.port
                self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', [
                    ("WWW-Authenticate",
                     'Bearer realm="%s",service="slimfs-test",scope="repository:x:pull"' % realm)])
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            conn = http.client.HTTPConnection(args.upstream, timeout=30)
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in ("authorization", "host", "connection")}
            conn.request(self.command, self.path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            hdrs = [(k, v) for k, v in r.getheaders()
                    if k.lower() not in ("content-length", "connection", "transfer-encoding")]
            self.reply(r.status, data, hdrs)
            conn.close()

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = handle_any

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    Server(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
