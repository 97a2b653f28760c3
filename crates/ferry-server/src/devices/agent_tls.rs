//! The agent endpoint's TLS: a certificate generated on first start (kept in
//! `DATA_DIR/agent-tls/`, key mode 0600) unless one is configured, its SHA-256 fingerprint (which
//! agents pin), and a listener that completes TLS handshakes off the accept loop.

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The agent endpoint's certificate.
#[derive(Clone)]
pub struct AgentTls {
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the certificate (DER), lower-case hex: what agents pin.
    pub fingerprint: String,
    pub cert_pem: String,
    /// Where the certificate came from.
    pub source: PathBuf,
}

impl std::fmt::Debug for AgentTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentTls")
            .field("fingerprint", &self.fingerprint)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// SHA-256 of a certificate, lower-case hex.
pub fn fingerprint(der: &[u8]) -> String {
    ferry_core::config::hex(&sha2::Sha256::digest(der))
}

/// Loads the configured certificate and key, or the one generated earlier in `data_dir`, or
/// generates one for `names` (host names and addresses agents use).
pub fn load_or_generate(
    data_dir: &Path,
    configured: Option<(&Path, &Path)>,
    names: &[String],
) -> Result<AgentTls, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (cert_path, key_path) = match configured {
        Some((c, k)) => (c.to_path_buf(), k.to_path_buf()),
        None => {
            let dir = data_dir.join("agent-tls");
            let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
            if !c.exists() || !k.exists() {
                generate(&dir, &c, &k, names)?;
            }
            (c, k)
        }
    };
    let cert_pem = std::fs::read_to_string(&cert_path)
        .map_err(|e| format!("cannot read {}: {e}", cert_path.display()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate ({e})", cert_path.display()))?;
    let Some(leaf) = certs.first() else {
        return Err(format!(
            "{}: no certificate in the file",
            cert_path.display()
        ));
    };
    let fp = fingerprint(leaf.as_ref());
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("{}: not a PEM private key ({e})", key_path.display()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the agent certificate and key do not go together: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(AgentTls {
        config: Arc::new(config),
        fingerprint: fp,
        cert_pem,
        source: cert_path,
    })
}

fn generate(dir: &Path, cert: &Path, key: &Path, names: &[String]) -> Result<(), String> {
    let mut names: Vec<String> = names.to_vec();
    for n in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|x| x == n) {
            names.push(n.to_string());
        }
    }
    let mut params = rcgen::CertificateParams::new(names)
        .map_err(|e| format!("cannot make the agent certificate: {e}"))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ferry agent endpoint");
    let now = std::time::SystemTime::now();
    params.not_before = now.into();
    params.not_after = (now + Duration::from_secs(10 * 365 * 86_400)).into();
    let kp = rcgen::KeyPair::generate().map_err(|e| format!("cannot make a key: {e}"))?;
    let c = params
        .self_signed(&kp)
        .map_err(|e| format!("cannot sign the agent certificate: {e}"))?;
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    crate::auth::write_private(key, kp.serialize_pem().as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", key.display()))?;
    crate::auth::write_private(cert, c.pem().as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", cert.display()))?;
    tracing::info!(path = %cert.display(), "generated the agent endpoint's certificate");
    Ok(())
}

/// A TCP listener that hands out TLS streams; handshakes run in their own tasks (with a time
/// limit) so that a slow or silent client cannot hold up the others.
pub struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(
        tcp: TcpListener,
        config: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (sock, addr) = match tcp.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::debug!(error = %e, "agent endpoint accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = sock.set_nodelay(true);
                if tx.is_closed() {
                    break;
                }
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(sock)).await
                    {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, addr)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { rx, local })
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(x) => x,
            // The accept task ended (the listener was dropped): wait forever like an idle socket.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The caller's address on the agent endpoint.
#[derive(Clone, Copy, Debug)]
pub struct AgentPeer(pub SocketAddr);

impl Connected<IncomingStream<'_, TlsListener>> for AgentPeer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        AgentPeer(*stream.remote_addr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused_with_a_private_key() {
        let d = tempfile::tempdir().unwrap();
        let a = load_or_generate(d.path(), None, &["ferry.contoso.test".into()]).unwrap();
        let b = load_or_generate(d.path(), None, &[]).unwrap();
        assert_eq!(
            a.fingerprint, b.fingerprint,
            "the same certificate on restart"
        );
        assert_eq!(a.fingerprint.len(), 64);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.path().join("agent-tls/key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let e = load_or_generate(
            d.path(),
            Some((
                &d.path().join("agent-tls/key.pem"),
                &d.path().join("agent-tls/key.pem"),
            )),
            &[],
        )
        .unwrap_err();
        assert!(
            e.contains("no certificate") || e.contains("not a PEM"),
            "{e}"
        );
    }
}
