"""A plain HTTP/1.1 origin for the integration tests: serves a folder, keep-alive; HTTPS with a cert.

/slow is a download that never ends by itself, 64 KiB every 0.1 s, so nothing
piles up in buffers on the way: a cut is seen as soon as it happens.

Run as a separate process: python origin.py PORT DIR [CERT KEY]
"""

import functools
import http.server
import ssl
import sys
import time

SLOW_CHUNK, SLOW_EVERY, SLOW_CHUNKS = 64 * 1024, 0.1, 10_000


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path != "/slow":
            return super().do_GET()
        self.send_response(200)
        self.send_header("Content-Length", str(SLOW_CHUNK * SLOW_CHUNKS))
        self.end_headers()
        try:
            for _ in range(SLOW_CHUNKS):
                self.wfile.write(bytes(SLOW_CHUNK))
                time.sleep(SLOW_EVERY)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


if __name__ == "__main__":
    port, folder = int(sys.argv[1]), sys.argv[2]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port),
                                             functools.partial(Handler, directory=folder))
    if len(sys.argv) == 5:  # an HTTPS site: TLS on the accepted sockets, in the handler threads
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[3], sys.argv[4])
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    server.serve_forever()
