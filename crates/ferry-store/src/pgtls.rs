//! TLS for PostgreSQL connections, with rustls (the crate the agent endpoint already uses).
//! The database URL takes libpq's `sslmode` and `sslrootcert`:
//!
//! - `disable` (or no `sslmode`): no TLS.
//! - `require`: TLS, the server's certificate not checked (libpq's meaning: encryption against a
//!   passive listener only). With `sslrootcert` given, it is checked as with `verify-full`.
//! - `verify-full`: TLS, the certificate must chain to `sslrootcert` (a PEM file) and name the
//!   host of the URL.
//!
//! `prefer`, `allow` and `verify-ca` are refused by name: a silent fall-back to plain text, or a
//! certificate checked without its host name, is not what someone asking for TLS expects.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

/// How a URL asks to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Plain,
    /// TLS; `roots` None: the certificate is not checked.
    Tls {
        roots: Option<String>,
    },
}

/// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL (tokio-postgres knows neither
/// `verify-full` nor `sslrootcert`); the rest of the URL is returned as it was.
pub fn split_url(url: &str) -> Result<(String, Mode), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), Mode::Plain));
    };
    let (mut mode, mut root, mut kept) = (None, None, Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslmode" => mode = Some(v.to_string()),
            "sslrootcert" => root = Some(percent_decode(v)?),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mode = match mode.as_deref() {
        None | Some("disable") if root.is_none() => Mode::Plain,
        None | Some("disable") => {
            return Err("sslrootcert is given but sslmode is not require or verify-full".into());
        }
        Some("require") => Mode::Tls { roots: root },
        Some("verify-full") => match root {
            Some(r) => Mode::Tls { roots: Some(r) },
            None => {
                return Err("sslmode=verify-full needs sslrootcert=FILE: the PEM file of the CA that signed the server's certificate".into());
            }
        },
        Some(m @ ("prefer" | "allow" | "verify-ca")) => {
            return Err(format!(
                "sslmode={m} is not supported: use require or verify-full (or disable)"
            ));
        }
        Some(m) => {
            return Err(format!(
                "sslmode={m} is not one of disable, require, verify-full"
            ));
        }
    };
    Ok((rest, mode))
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("sslrootcert: bad %-escape at byte {i}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "sslrootcert: not UTF-8".to_string())
}

/// The rustls client configuration for a TLS mode.
pub fn client_config(roots: Option<&str>) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match roots {
        Some(path) => {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject;
            let mut store = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("sslrootcert {path}: {e}"))?;
            for c in certs {
                let c = c.map_err(|e| format!("sslrootcert {path}: {e}"))?;
                store
                    .add(c)
                    .map_err(|e| format!("sslrootcert {path}: {e}"))?;
            }
            if store.is_empty() {
                return Err(format!("sslrootcert {path}: no certificate in it"));
            }
            builder.with_root_certificates(store).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unchecked(provider)))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// `sslmode=require` without a root: the handshake's signatures are checked, the certificate
/// is not (libpq's `require`).
#[derive(Debug)]
struct Unchecked(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What deadpool hands tokio-postgres for each new connection.
#[derive(Clone)]
pub struct MakeRustls(pub Arc<rustls::ClientConfig>);

pub struct Connect {
    config: Arc<rustls::ClientConfig>,
    name: rustls::pki_types::ServerName<'static>,
}

pub struct Stream<S>(tokio_rustls::client::TlsStream<S>);

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Stream<S>;
    type TlsConnect = Connect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<Connect> {
        let name = rustls::pki_types::ServerName::try_from(domain.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Connect {
            config: Arc::clone(&self.0),
            name,
        })
    }
}

impl<S> TlsConnect<S> for Connect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Stream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Stream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let s = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(Stream(s))
        })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for Stream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_leave_the_url() {
        // Catches verify-full passed on to tokio-postgres (which refuses it) or a mode dropped.
        let u = "postgres://u:p@db.example:5432/ferry?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=ferry";
        assert_eq!(
            split_url(u).unwrap(),
            (
                "postgres://u:p@db.example:5432/ferry?application_name=ferry".into(),
                Mode::Tls {
                    roots: Some("/etc/ca.pem".into())
                }
            )
        );
        assert_eq!(
            split_url("postgres://h/db?sslmode=require").unwrap(),
            ("postgres://h/db".into(), Mode::Tls { roots: None })
        );
        assert_eq!(
            split_url("postgres://h/db").unwrap(),
            ("postgres://h/db".into(), Mode::Plain)
        );
        for bad in [
            "postgres://h/db?sslmode=verify-full",
            "postgres://h/db?sslmode=prefer",
            "postgres://h/db?sslmode=verify-ca&sslrootcert=x",
            "postgres://h/db?sslmode=bogus",
            "postgres://h/db?sslrootcert=x",
        ] {
            assert!(split_url(bad).is_err(), "{bad}");
        }
    }
}
