"""A local stand-in for Google's ID-token signer: an RSA key, its certificate served over HTTP.

No stand-in exists for Google's signer (the tokens Pub/Sub push attaches are signed by Google's
keys), so the tests sign Google-shaped ID tokens with a locally generated key and serve its
certificate in Google's v1 format (``{kid: x509 PEM}``); the endpoint verifies them with the
real ``google.oauth2.id_token.verify_token`` pointed at that certificates URL.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _key_and_cert() -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mountsync-test-signer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return private_pem, cert.public_bytes(serialization.Encoding.PEM)


class LocalSigner:
    """Signs ID tokens; ``certs_url`` serves the matching certificate (start/stop it)."""

    def __init__(self) -> None:
        self.kid = uuid.uuid4().hex
        self._private_pem, self._cert_pem = _key_and_cert()
        certs = json.dumps({self.kid: self._cert_pem.decode()}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(certs)))
                self.end_headers()
                self.wfile.write(certs)

            def log_message(self, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.certs_url = f"http://127.0.0.1:{self._server.server_address[1]}/oauth2/v1/certs"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> LocalSigner:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def token(self, *, private_pem: bytes | None = None, **claims: Any) -> str:
        """A Google-shaped ID token; ``claims`` override the defaults (None removes one)."""
        from google.auth import crypt, jwt

        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": "https://accounts.google.com",
            "sub": "112233445566778899",
            "azp": "112233445566778899",
            "email": "pusher@acme.iam.gserviceaccount.com",
            "email_verified": True,
            "iat": now,
            "exp": now + 3600,
        }
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        signer = crypt.RSASigner.from_string(private_pem or self._private_pem, key_id=self.kid)
        return jwt.encode(signer, payload).decode()

    @staticmethod
    def other_key() -> bytes:
        """A private key Google never published (a forged signature)."""
        return _key_and_cert()[0]
