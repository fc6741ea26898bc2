#!/usr/bin/env python3
"""A deliberately broken HTTP/1.1 server for the transport specs: answers
that no real server sends, which the sandbox cannot make.

    raw_http.py MODE LOG     prints its port on the first line of stdout

Listens on 127.0.0.1 only; appends one line per request it read to LOG;
stops after 60 s or on SIGTERM.  MODE:
    huge_header_line   a 1 MiB header line
    many_headers       10,000 headers
    json:TEXT          200 with TEXT as the body (e.g. json:false)
"""
import signal
import socketserver
import sys
import threading

MODE, LOG = sys.argv[1], sys.argv[2]


def answer():
    if MODE == "huge_header_line":
        return b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (1 << 20) + b"\r\nContent-Length: 2\r\n\r\n{}"
    if MODE == "many_headers":
        lines = b"".join(b"X-H%d: v\r\n" % i for i in range(10000))
        return b"HTTP/1.1 200 OK\r\n" + lines + b"Content-Length: 2\r\n\r\n{}"
    if MODE.startswith("json:"):
        body = MODE[5:].encode()
        return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % len(body)) + body
    raise SystemExit("unknown mode " + MODE)


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        try:
            self.serve()
        except OSError:   # the client hung up, as these answers make it do
            pass

    def serve(self):
        while True:
            line = self.rfile.readline()
            if not line:
                return
            length = 0
            while True:
                header = self.rfile.readline()
                if header in (b"\r\n", b"\n", b""):
                    break
                if header.lower().startswith(b"content-length:"):
                    length = int(header.split(b":", 1)[1])
            self.rfile.read(length)
            with open(LOG, "a") as log:
                log.write(line.decode("latin-1").strip() + "\n")
            self.wfile.write(answer())
            self.wfile.flush()


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


server = Server(("127.0.0.1", 0), Handler)
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
stopper = threading.Timer(60, server.shutdown)
stopper.daemon = True
stopper.start()
print(server.server_address[1], flush=True)
server.serve_forever()
