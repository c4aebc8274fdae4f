#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""HTTP range server for fault-injection tests.

Serves one file at /image with Range support (206, 416). Before every
request it reads MODE-FILE (one word; missing or empty = ok) and misbehaves:

  ok       answer correctly
  500      HTTP 500
  404      HTTP 404
  416      HTTP 416 for every range
  short    a 206 whose body is half of what Content-Length promises, then close
  wrong    a correct-looking 206 with flipped bytes
  reset    close the connection without answering
  stall    accept, then say nothing for 10 minutes
  norange  ignore Range: 200 with the whole file
  slow     answer correctly after 200 ms

Requests with a range starting at 0 and shorter than 64 KiB (the superblock and
index probe) are answered correctly in every mode, unless the mode ends in '!',
so that a mount can start and the faults hit chunk reads.
"""
import argparse
import http.server
import os
import re
import socketserver
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode-file", required=True)
    ap.add_argument("file")
    args = ap.parse_args()
    data = open(args.file, "rb").read()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            sys.stderr.write("%s %s\n" % (self.requestline, fmt % a))

        def mode(self, start, length):
            try:
                m = open(args.mode_file).read().strip()
            except OSError:
                m = ""
            if m.endswith("!"):
                return m[:-1]
            if start == 0 and length <= 65536:
                return "ok"
            return m or "ok"

        def do_GET(self):
            if self.path != "/image":
                self.send_error(404)
                return
            rng = self.headers.get("Range")
            m = re.fullmatch(r"bytes=(\d+)-(\d+)", rng or "")
            if not m:
                start, end = 0, len(data) - 1
            else:
                start, end = int(m.group(1)), min(int(m.group(2)), len(data) - 1)
            mode = self.mode(start, end - start + 1)
            if mode == "stall":
                time.sleep(600)
                return
            if mode == "reset":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if mode in ("500", "404"):
                self.send_response(int(mode))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if mode == "slow":
                time.sleep(0.2)
            if mode == "norange" or not m:
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if mode == "416" or start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % len(data))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = data[start:end + 1]
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, len(data)))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if mode == "short":
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            if mode == "wrong":
                body = bytes(b ^ 0x5A for b in body)
            self.wfile.write(body)

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    Server(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
