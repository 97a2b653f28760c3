//! The agent's side of the agent protocol (docs/agent-protocol.md) over HTTPS that trusts exactly
//! one certificate: the server's, pinned by its SHA-256 fingerprint. The handshake signature is
//! still verified against that certificate's key, so a copy of the certificate without its key is
//! no use to anybody.

use ferry_core::agent::{
    AgentError, AgentEvent, CheckinRequest, CheckinResponse, Credential, DeviceFacts,
    EnrollRequest, EnrollResponse, EventsRequest, HarvestedProfile, LogChunk, PROTOCOL_VERSION,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::Digest;
use std::sync::Arc;
use std::time::Duration;

/// Accepts exactly the certificate whose SHA-256 is `fingerprint`.
#[derive(Debug)]
struct Pinned {
    fingerprint: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got: [u8; 32] = sha2::Sha256::digest(end_entity.as_ref()).into();
        // Compared in full, whatever differs first.
        let diff = got
            .iter()
            .zip(self.fingerprint.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server's certificate has SHA-256 {}, not the pinned {}",
                ferry_core::config::hex(&got),
                ferry_core::config::hex(&self.fingerprint)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Parses a fingerprint as `ferry agents endpoint` prints it (hex, `:` allowed).
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], String> {
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    bytes
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            format!("`{s}` is not a SHA-256 fingerprint (64 hex digits, as `ferry agents endpoint` shows)")
        })
}

/// Checks an agent endpoint URL as the agent uses it (`--server`): it parses, and it is HTTPS.
pub fn check_server(server: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(server).map_err(|e| format!("--server `{server}`: {e}"))?;
    if url.scheme() != "https" {
        return Err(format!(
            "--server `{server}`: agents talk to the server over HTTPS only (the agent endpoint, as `ferry agents endpoint` shows it)"
        ));
    }
    Ok(())
}

/// Why a call failed: the server could not be reached (buffer and retry), or it answered with
/// a refusal (which retrying will not fix).
#[derive(Debug)]
pub enum CallError {
    Unreachable(String),
    Refused {
        status: u16,
        code: String,
        error: String,
    },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(e) => write!(f, "the server is unreachable: {e}"),
            CallError::Refused {
                status,
                code,
                error,
            } => write!(f, "the server refused ({status} {code}): {error}"),
        }
    }
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    node_key: Option<Credential>,
}

impl Client {
    /// `server` is the agent endpoint URL (`https://host:5443/agent`).
    pub fn new(server: &str, fingerprint: &str) -> Result<Client, String> {
        check_server(server)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                fingerprint: parse_fingerprint(fingerprint)?,
                provider,
            }))
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            // A run's steps can block this thread for minutes: no pooled connection goes stale.
            .pool_max_idle_per_host(0)
            .user_agent(concat!("ferry-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("TLS client: {e}"))?;
        Ok(Client {
            http,
            base: server.trim_end_matches('/').to_string(),
            node_key: None,
        })
    }

    pub fn with_node_key(mut self, key: Credential) -> Client {
        self.node_key = Some(key);
        self
    }

    async fn post<B: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Option<R>, CallError> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn call<B: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Option<R>, CallError> {
        let mut req = self
            .http
            .request(method, format!("{}/v1/{path}", self.base))
            .header("Ferry-Agent-Protocol", PROTOCOL_VERSION.to_string());
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(k) = &self.node_key {
            req = req.bearer_auth(k.expose());
        }
        let resp = req.send().await.map_err(|e| {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg = format!("{msg}: {s}");
                src = s.source();
            }
            CallError::Unreachable(msg)
        })?;
        let status = resp.status();
        if status == reqwest::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| CallError::Unreachable(e.to_string()))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| CallError::Refused {
                    status: status.as_u16(),
                    code: "bad_answer".into(),
                    error: format!("the answer to {path} is not what this agent expects: {e}"),
                });
        }
        // 5xx and proxies' error pages: try again later; the server's own refusals: not.
        match serde_json::from_slice::<AgentError>(&bytes) {
            Ok(e) if status.is_client_error() => Err(CallError::Refused {
                status: status.as_u16(),
                code: e.code,
                error: e.error,
            }),
            Ok(e) => Err(CallError::Unreachable(format!("{status}: {}", e.error))),
            Err(_) => Err(CallError::Unreachable(format!(
                "{status}: {}",
                String::from_utf8_lossy(&bytes)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ))),
        }
    }

    pub async fn enroll(
        &self,
        psk: &Credential,
        device: DeviceFacts,
        profiles: Vec<HarvestedProfile>,
        previous_node_key: Option<Credential>,
    ) -> Result<EnrollResponse, CallError> {
        let req = EnrollRequest {
            protocol: PROTOCOL_VERSION,
            psk: psk.clone(),
            device,
            profiles,
            previous_node_key,
        };
        self.post("enroll", &req).await?.ok_or(CallError::Refused {
            status: 204,
            code: "bad_answer".into(),
            error: "enroll answered without a body".into(),
        })
    }

    /// A runbook of this device's batch (for its pre-flight ahead of the order).
    pub async fn runbook(&self, name: &str) -> Result<ferry_core::runbook::Runbook, CallError> {
        let path = format!("runbooks/{}", percent(name));
        self.call::<(), _>(reqwest::Method::GET, &path, None)
            .await?
            .ok_or(CallError::Refused {
                status: 204,
                code: "bad_answer".into(),
                error: "runbook answered without a body".into(),
            })
    }

    pub async fn checkin(&self, req: &CheckinRequest) -> Result<CheckinResponse, CallError> {
        self.post("checkin", req).await?.ok_or(CallError::Refused {
            status: 204,
            code: "bad_answer".into(),
            error: "check-in answered without a body".into(),
        })
    }

    pub async fn events(&self, run: &str, events: Vec<AgentEvent>) -> Result<(), CallError> {
        let req = EventsRequest {
            protocol: PROTOCOL_VERSION,
            run: run.to_string(),
            events,
        };
        self.post::<_, serde_json::Value>("events", &req)
            .await
            .map(|_| ())
    }

    pub async fn log(&self, run: &str, offset: u64, text: String) -> Result<(), CallError> {
        let req = LogChunk {
            protocol: PROTOCOL_VERSION,
            run: run.to_string(),
            offset,
            text,
        };
        self.post::<_, serde_json::Value>("logs", &req)
            .await
            .map(|_| ())
    }
}

/// A path segment, percent-encoded (runbook names may hold spaces and punctuation).
fn percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_with_or_without_colons() {
        let hex = "ab".repeat(32);
        assert_eq!(parse_fingerprint(&hex).unwrap(), [0xab; 32]);
        let colons: Vec<String> = (0..32).map(|_| "AB".to_string()).collect();
        assert_eq!(parse_fingerprint(&colons.join(":")).unwrap(), [0xab; 32]);
        assert!(parse_fingerprint("abcd").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
        assert!(Client::new("http://x/agent", &hex).is_err());
    }
}
