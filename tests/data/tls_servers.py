"""Real servers for the notice tests, on 127.0.0.1, with a certificate of the tests' own CA:

- SMTP (aiosmtpd) that requires STARTTLS and AUTH (PLAIN/LOGIN) with the user and password given;
- HTTPS (the standard library) that takes POSTs.

Every message and POST received is written to OUT_DIR as a file (`mail-N.eml` with a first line
`X-Test-Auth: <user>` and `X-Test-TLS: yes|no`, `post-N.json` with the request headers as
`X-Test-Header-*` lines, then a blank line and the body). The ports are printed on stdout as one JSON
line, then the servers run until stdin is closed.

usage: tls_servers.py CERT KEY OUT_DIR USER PASSWORD
"""

import http.server
import itertools
import json
import socket
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

cert, key, out_dir, user, password = sys.argv[1:6]
counter = itertools.count(1)


def context():
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    c.load_cert_chain(cert, key)
    return c


class Handler:
    async def handle_DATA(self, server, session, envelope):
        n = next(counter)
        with open(f"{out_dir}/mail-{n}.eml", "wb") as f:
            f.write(f"X-Test-Auth: {session.auth_data.login.decode() if session.auth_data else ''}\r\n".encode())
            f.write(f"X-Test-TLS: {'yes' if session.ssl else 'no'}\r\n".encode())
            f.write(f"X-Test-Rcpt: {','.join(envelope.rcpt_tos)}\r\n".encode())
            f.write(envelope.original_content)
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == user
        and auth_data.password.decode() == password
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


# The controller checks its server by connecting to the port it was given: find a free one first.
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    smtp_port = s.getsockname()[1]
smtp = Controller(
    Handler(),
    hostname="127.0.0.1",
    port=smtp_port,
    tls_context=context(),
    require_starttls=True,
    authenticator=authenticator,
    auth_required=True,
    auth_require_tls=True,
)
smtp.start()


class Post(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        n = next(counter)
        with open(f"{out_dir}/post-{n}.json", "wb") as f:
            for k, v in self.headers.items():
                f.write(f"X-Test-Header-{k}: {v}\n".encode())
            f.write(b"\n")
            f.write(body)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


https = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Post)
https.socket = context().wrap_socket(https.socket, server_side=True)
threading.Thread(target=https.serve_forever, daemon=True).start()

print(json.dumps({"smtp": smtp_port, "https": https.server_address[1]}), flush=True)
sys.stdin.read()
smtp.stop()
