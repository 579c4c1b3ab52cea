"""The server's TLS context from ``[api] tls_certificate``, ``tls_key``, ``tls_client_auth``.

Each file is read and parsed here first, so that a file that cannot be read, or does not hold
what it should, stops the start with a message naming it (a configuration that asks for TLS
never falls back to plain HTTP). With ``tls_client_auth`` every client must present a
certificate that chains to that trust anchor; the handshake fails otherwise, before any
request is read.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from .settings import ApiSettings, SettingsError

__all__ = ["server_context"]


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise SettingsError(f"cannot start TLS: cannot read the {what} {path}: {e}") from None


def _certificates(path: Path, what: str) -> list[x509.Certificate]:
    data = _read(path, what)
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        certificates = []
    if not certificates:
        raise SettingsError(
            f"cannot start TLS: the {what} {path} holds no PEM certificate"
        ) from None
    return certificates


def server_context(api: ApiSettings) -> ssl.SSLContext:
    """A TLS 1.2+ server context for ``api`` (which must have ``tls`` set).

    Raises :class:`SettingsError` naming the file that cannot be read or used.
    """
    if api.tls_certificate is None or api.tls_key is None:
        raise SettingsError("validation failed: api: invalid tls settings")
    _certificates(api.tls_certificate, "certificate (api.tls_certificate)")
    key = _read(api.tls_key, "private key (api.tls_key)")
    try:
        load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as e:
        raise SettingsError(
            f"cannot start TLS: the private key (api.tls_key) {api.tls_key} is not an"
            f" unencrypted PEM private key: {e}"
        ) from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(api.tls_certificate, api.tls_key)
    except (ssl.SSLError, OSError) as e:
        raise SettingsError(
            f"cannot start TLS: the certificate {api.tls_certificate} and the key"
            f" {api.tls_key} do not go together: {e}"
        ) from None
    if api.tls_client_auth is not None:
        _certificates(api.tls_client_auth, "trust anchor (api.tls_client_auth)")
        try:
            context.load_verify_locations(cafile=str(api.tls_client_auth))
        except (ssl.SSLError, OSError) as e:
            raise SettingsError(
                f"cannot start TLS: the trust anchor (api.tls_client_auth)"
                f" {api.tls_client_auth} does not load: {e}"
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context
