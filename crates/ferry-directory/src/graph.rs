//! `kind = "graph"`: Microsoft Entra ID tenants through Microsoft Graph v1.0.
//!
//! * **Sign-in**: OAuth 2.0 client credentials at `{login}/{tenant}/oauth2/v2.0/token`, scope
//!   `{graph}/.default`, with a client secret or a PS256 client assertion signed by the app's
//!   certificate key. The token is cached until a minute before `expires_in`; a 401 drops it.
//!   AADSTS errors are shown with their code and what to do about them.
//! * **Full import**: per object type, first the current deltaLink (`/delta?$deltaToken=latest`,
//!   "sync from now"), then the list (`$select` of the attributes ferry uses, `$top=999`),
//!   following `@odata.nextLink` verbatim. Group members are read with `$batch` (20 groups per
//!   round trip). Taking the deltaLink first means a change made during the listing is replayed by
//!   the next delta rather than lost (replays are harmless).
//! * **Delta import**: the stored deltaLinks; `@removed` objects (soft-deleted or gone) leave the
//!   translation table; groups that changed have their members read again. `410 Gone` or an
//!   expired token (`syncStateNotFound`) falls back to a full import.
//! * **Throttling**: 429 and 503 wait `Retry-After` (decimal seconds or an HTTP date), otherwise an
//!   exponential backoff with jitter; at most `max_attempts` tries. Every throttle is a warning in
//!   the cycle's message log; `$batch` items answered 429 are retried in a later batch.
//! * **Export**: creates users (with a generated initial password that must be changed at first
//!   sign-in, handed back to the engine, never logged) and security groups, updates attributes,
//!   and adds or removes group members, all through `$batch`.

use crate::*;
use ferry_core::config::GraphDirectory;
use ferry_core::model::AttrRef;
use ferry_core::plan::AttrChange;
use ferry_core::sid::entra_sid_from_object_id;
use reqwest::{Method, StatusCode, header::HeaderMap};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Properties read per object type ("returned only on `$select`" ones included).
const USER_SELECT: &str = "id,displayName,userPrincipalName,mail,securityIdentifier,onPremisesSecurityIdentifier,onPremisesImmutableId,employeeId,proxyAddresses,accountEnabled,givenName,surname,mailNickname";
const GROUP_SELECT: &str = "id,displayName,mail,mailNickname,securityEnabled,mailEnabled,securityIdentifier,onPremisesSecurityIdentifier";
const DEVICE_SELECT: &str =
    "id,deviceId,displayName,operatingSystem,operatingSystemVersion,trustType,accountEnabled";
/// A page chain longer than this is treated as a server that never ends.
const MAX_PAGES: usize = 200_000;
/// Graph's `$batch` limit.
const BATCH: usize = 20;

pub struct GraphConnector {
    cfg: GraphDirectory,
    base: PathBuf,
    secret: Option<Secret>,
    http: reqwest::Client,
    token: tokio::sync::Mutex<Option<(Secret, Instant)>>,
    /// Throttle warnings not yet handed to a cycle.
    throttles: Mutex<Vec<LogEntry>>,
    retries: AtomicU64,
}

impl std::fmt::Debug for GraphConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphConnector")
            .field("name", &self.cfg.name)
            .field("tenant_id", &self.cfg.tenant_id)
            .field("client_id", &self.cfg.client_id)
            .finish_non_exhaustive()
    }
}

/// One directory object as Graph sends it (users, groups, devices, delta items, members).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct GObject {
    id: String,
    #[serde(rename = "@odata.type")]
    odata_type: Option<String>,
    #[serde(rename = "@removed")]
    removed: Option<Removed>,
    display_name: Option<String>,
    user_principal_name: Option<String>,
    mail: Option<String>,
    security_identifier: Option<String>,
    on_premises_security_identifier: Option<String>,
    on_premises_immutable_id: Option<String>,
    employee_id: Option<String>,
    proxy_addresses: Option<Vec<String>>,
    account_enabled: Option<bool>,
    given_name: Option<String>,
    surname: Option<String>,
    mail_nickname: Option<String>,
    security_enabled: Option<bool>,
    mail_enabled: Option<bool>,
    device_id: Option<String>,
    operating_system: Option<String>,
    operating_system_version: Option<String>,
    trust_type: Option<String>,
    #[serde(rename = "members@delta")]
    members_delta: Option<Vec<GObject>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Removed {
    reason: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Page {
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink")]
    delta_link: Option<String>,
    value: Vec<GObject>,
}

/// An HTTP answer, read whole.
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
}

/// One request of a `$batch`.
#[derive(Clone, Debug)]
struct BatchReq {
    method: &'static str,
    /// Relative to `/v1.0`, e.g. `/users`.
    url: String,
    body: Option<Value>,
}

/// The meaning of common AADSTS codes, in words an operator acts on.
fn aadsts_meaning(code: u64) -> &'static str {
    match code {
        90002 => {
            "the tenant does not exist: check tenant_id (a GUID or a verified domain) and cloud"
        }
        900023 => "the tenant id is not valid: check tenant_id",
        700016 => {
            "no application with this client_id in the tenant: check client_id and tenant_id, and that the app is registered (or consented) in this tenant"
        }
        7000215 => {
            "the client secret is wrong: copy the secret's Value (not its Secret ID) into client_secret"
        }
        7000222 => "the client secret has expired: create a new one on the app registration",
        70011 | 1002012 => {
            "the scope is not valid: it must be the Graph host followed by /.default"
        }
        700027 => {
            "the client assertion's signature did not verify: upload certificate_file to the app registration"
        }
        700024 => "the client assertion is outside its valid time: check this machine's clock",
        7000112 => "the application is disabled in the tenant",
        500011 => "the resource (Microsoft Graph) is not available in this tenant: check cloud",
        50034 | 50126 => "the sign-in name or password is wrong",
        _ => "see the error description",
    }
}

/// `Retry-After` as a duration: decimal seconds (Graph's own sample is `2.128`) or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<f64>() {
        return (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s.min(3600.0)));
    }
    let t = jiff::fmt::rfc2822::parse(v).ok()?;
    let now = jiff::Timestamp::now();
    let d = t.timestamp().duration_since(now);
    Some(Duration::from_secs_f64(d.as_secs_f64().clamp(0.0, 3600.0)))
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Exponential backoff with full jitter: attempt 1 → up to 0.5 s, doubling, capped at 30 s.
fn backoff(attempt: u32) -> Duration {
    let cap = (0.5 * f64::from(1u32 << attempt.min(6))).min(30.0);
    let mut b = [0u8; 4];
    let r = if getrandom::fill(&mut b).is_ok() {
        f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX)
    } else {
        0.5
    };
    Duration::from_secs_f64(cap * (0.5 + r / 2.0))
}

/// A token endpoint's answer: the access token and its lifetime in seconds, or the error code
/// (`AADSTS…` when there is one) and what it means. `{url}` in the message stands for the endpoint.
fn read_token_answer(status: StatusCode, body: &[u8]) -> Result<(Secret, u64), (String, String)> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Err((
            format!("HTTP {}", status.as_u16()),
            format!(
                "the token endpoint {{url}} did not answer JSON: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ),
        ));
    };
    if status.is_success()
        && let Some(t) = v["access_token"].as_str()
    {
        return Ok((Secret::new(t), v["expires_in"].as_u64().unwrap_or(3599)));
    }
    let code = v["error_codes"][0].as_u64();
    let description = v["error_description"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    Err((
        match code {
            Some(c) => format!("AADSTS{c}"),
            None => v["error"].as_str().unwrap_or("error").to_string(),
        },
        format!(
            "{} ({description})",
            code.map_or("see the error description", aadsts_meaning)
        ),
    ))
}

/// One response of a `$batch` answer.
#[derive(Debug)]
struct BatchItem {
    /// The request's id (ferry numbers its requests).
    index: usize,
    status: u16,
    /// The item's own `Retry-After`, from its `headers`.
    retry_after: Option<Duration>,
    body: Value,
}

/// The responses of a `$batch` answer, in the order they came (Graph may reorder them).
fn batch_items(v: Value) -> Vec<BatchItem> {
    let Value::Object(mut m) = v else {
        return Vec::new();
    };
    let Some(Value::Array(responses)) = m.remove("responses") else {
        return Vec::new();
    };
    responses
        .into_iter()
        .filter_map(|mut r| {
            let index = r["id"].as_str()?.parse::<usize>().ok()?;
            let retry_after = r["headers"].as_object().and_then(|h| {
                h.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
                    .and_then(|(_, v)| {
                        v.as_str().and_then(parse_retry_after).or_else(|| {
                            v.as_f64()
                                .map(|f| Duration::from_secs_f64(f.clamp(0.0, 3600.0)))
                        })
                    })
            });
            Some(BatchItem {
                index,
                status: r["status"].as_u64().unwrap_or(0) as u16,
                retry_after,
                body: r["body"].take(),
            })
        })
        .collect()
}

/// Graph's error body: `{"error": {"code": "...", "message": "..."}}`.
fn graph_error_parts(body: &[u8]) -> (String, String) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let e = &v["error"];
    (
        e["code"].as_str().unwrap_or_default().to_string(),
        e["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into()),
    )
}

fn base64url(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A generated initial password: 20 characters with upper and lower case, digits and symbols
/// (Entra's complexity rule asks for three of the four).
fn initial_password() -> Secret {
    const SETS: [&[u8]; 4] = [
        b"ABCDEFGHJKLMNPQRSTUVWXYZ",
        b"abcdefghijkmnopqrstuvwxyz",
        b"23456789",
        b"!#%+-=?@^_",
    ];
    let mut r = [0u8; 20];
    if getrandom::fill(&mut r).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(7, |d| d.as_nanos());
        for (i, b) in r.iter_mut().enumerate() {
            *b = (t >> (i % 16 * 8)) as u8 ^ (i as u8).wrapping_mul(97);
        }
    }
    let p: String = r
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let set = SETS[if i < 4 { i } else { *b as usize % 4 }];
            set[*b as usize % set.len()] as char
        })
        .collect();
    Secret::new(p)
}

/// Graph's name for a ferry or directory attribute, or None when it cannot be written.
fn graph_attr(name: &str) -> Option<String> {
    Some(match AttrRef::parse(name) {
        AttrRef::Name => "displayName".into(),
        AttrRef::Upn => "userPrincipalName".into(),
        AttrRef::Mail => "mail".into(),
        AttrRef::Other(n) => match n.as_str() {
            // Read-only or computed in Graph.
            "proxyAddresses"
            | "securityIdentifier"
            | "onPremisesSecurityIdentifier"
            | "onPremisesImmutableId"
            | "deviceId"
            | "trustType"
            | "objectClass"
            | "dn" => {
                return None;
            }
            _ => n,
        },
        _ => return None,
    })
}

/// A JSON value for an attribute: booleans stay booleans, multi-valued ones are arrays.
fn graph_value(attr: &str, v: &[String]) -> Value {
    match (attr, v) {
        ("accountEnabled" | "securityEnabled" | "mailEnabled", [one]) => {
            Value::Bool(one.eq_ignore_ascii_case("true"))
        }
        ("businessPhones" | "otherMails" | "imAddresses", _) => json!(v),
        (_, []) => Value::Null,
        (_, [one]) => Value::String(one.clone()),
        _ => json!(v),
    }
}

/// A mailNickname from a UPN or name: the characters Graph accepts, at most 64.
fn nickname(s: &str) -> String {
    let local = s.split('@').next().unwrap_or(s);
    let n: String = local
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(64)
        .collect();
    if n.is_empty() { "user".into() } else { n }
}

impl GraphConnector {
    /// `base` resolves `certificate_file` / `private_key_file`; `secret` is the resolved client
    /// secret (none with a certificate).
    pub fn new(cfg: GraphDirectory, base: &Path, secret: Option<Secret>) -> GraphConnector {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .timeout(cfg.timeout.0)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        GraphConnector {
            cfg,
            base: base.to_path_buf(),
            secret,
            http,
            token: tokio::sync::Mutex::new(None),
            throttles: Mutex::new(Vec::new()),
            retries: AtomicU64::new(0),
        }
    }

    /// Retries made so far (throttled or failed requests sent again), for reports and benchmarks.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    fn url(&self, rel: &str) -> String {
        format!("{}/v1.0{rel}", self.cfg.graph_url())
    }

    fn net_error(&self, url: &str, e: &reqwest::Error) -> DirectoryError {
        if e.is_timeout() {
            DirectoryError::Timeout {
                url: url.to_string(),
                seconds: self.cfg.timeout.0.as_secs(),
            }
        } else {
            let mut detail = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                detail = format!("{detail}: {s}");
                src = s.source();
            }
            DirectoryError::Unreachable {
                url: url.to_string(),
                detail,
            }
        }
    }

    /// The client assertion: a PS256 JWT signed with the app's certificate key.
    fn client_assertion(&self, token_url: &str) -> Result<String, DirectoryError> {
        use ring::signature::{RSA_PSS_SHA256, RsaKeyPair};
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let (Some(cert), Some(key)) = (&self.cfg.certificate_file, &self.cfg.private_key_file)
        else {
            return Err(DirectoryError::Auth {
                tenant: self.cfg.tenant_id.clone(),
                code: "credentials".into(),
                detail: "no client secret and no certificate_file/private_key_file".into(),
            });
        };
        let (cert, key) = (self.base.join(cert), self.base.join(key));
        let read_err = |p: &Path, e: String| DirectoryError::FileRead {
            path: p.to_path_buf(),
            detail: e,
        };
        let der = CertificateDer::from_pem_file(&cert)
            .map_err(|e| read_err(&cert, format!("not a PEM certificate ({e})")))?;
        let pair = match PrivateKeyDer::from_pem_file(&key)
            .map_err(|e| read_err(&key, format!("not a PEM private key ({e})")))?
        {
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            _ => {
                return Err(read_err(
                    &key,
                    "not an RSA key: PS256 needs an RSA private key (PKCS#8 or PKCS#1)".into(),
                ));
            }
        }
        .map_err(|e| read_err(&key, format!("the RSA key was rejected: {e}")))?;
        use sha2::Digest;
        let thumb = base64url(&sha2::Sha256::digest(der.as_ref()));
        let now = jiff::Timestamp::now().as_second();
        let header = json!({"alg": "PS256", "typ": "JWT", "x5t#S256": thumb});
        let claims = json!({
            "aud": token_url,
            "iss": self.cfg.client_id,
            "sub": self.cfg.client_id,
            "jti": new_guid(),
            "nbf": now - 60,
            "iat": now,
            "exp": now + 300,
        });
        let signing_input = format!(
            "{}.{}",
            base64url(header.to_string().as_bytes()),
            base64url(claims.to_string().as_bytes())
        );
        let mut sig = vec![0u8; pair.public().modulus_len()];
        pair.sign(
            &RSA_PSS_SHA256,
            &ring::rand::SystemRandom::new(),
            signing_input.as_bytes(),
            &mut sig,
        )
        .map_err(|_| read_err(&key, "signing the client assertion failed".into()))?;
        Ok(format!("{signing_input}.{}", base64url(&sig)))
    }

    /// A valid access token, from the cache or the token endpoint.
    async fn access_token(&self) -> Result<Secret, DirectoryError> {
        let mut cached = self.token.lock().await;
        if let Some((t, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let token_url = format!(
            "{}/{}/oauth2/v2.0/token",
            self.cfg.login_url(),
            self.cfg.tenant_id
        );
        let scope = format!("{}/.default", self.cfg.graph_url());
        let mut form: Vec<(&str, String)> = vec![
            ("client_id", self.cfg.client_id.clone()),
            ("scope", scope),
            ("grant_type", "client_credentials".into()),
        ];
        match &self.secret {
            Some(s) => form.push(("client_secret", s.expose().to_string())),
            None => {
                form.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                ));
                form.push(("client_assertion", self.client_assertion(&token_url)?));
            }
        }
        let mut attempt = 0;
        let (status, body) = loop {
            attempt += 1;
            let r = self.http.post(&token_url).form(&form).send().await;
            match r {
                Ok(r)
                    if (r.status() == StatusCode::TOO_MANY_REQUESTS
                        || r.status().is_server_error())
                        && attempt < self.cfg.max_attempts =>
                {
                    let wait = header(r.headers(), "retry-after")
                        .and_then(parse_retry_after)
                        .unwrap_or_else(|| backoff(attempt));
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(wait).await;
                }
                Ok(r) => {
                    let status = r.status();
                    let body = r
                        .bytes()
                        .await
                        .map_err(|e| self.net_error(&token_url, &e))?;
                    break (status, body);
                }
                Err(e) if attempt < 3 && !e.is_connect() => {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(self.net_error(&token_url, &e)),
            }
        };
        match read_token_answer(status, &body) {
            Ok((t, life)) => {
                // A day at most, whatever `expires_in` says (near u64::MAX it would overflow).
                let life = life.clamp(61, 86_400) - 60;
                let until = Instant::now() + Duration::from_secs(life);
                *cached = Some((t.clone(), until));
                Ok(t)
            }
            Err((code, detail)) => Err(DirectoryError::Auth {
                tenant: self.cfg.tenant_id.clone(),
                code,
                detail: detail.replace("{url}", &token_url),
            }),
        }
    }

    fn throttled(&self, what: &str, status: StatusCode, headers: &HeaderMap, wait: Duration) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        let scope = header(headers, "x-ms-throttle-scope")
            .map(|s| format!(", scope {s}"))
            .unwrap_or_default();
        let msg = format!(
            "Microsoft Graph throttled {what} (HTTP {}{scope}); retrying in {:.1} s",
            status.as_u16(),
            wait.as_secs_f64()
        );
        tracing::debug!(directory = self.cfg.name, "{msg}");
        if let Ok(mut t) = self.throttles.lock() {
            t.push(LogEntry::warning("throttled", msg));
        }
    }

    fn take_throttle_logs(&self) -> Vec<LogEntry> {
        self.throttles
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default()
    }

    /// Sends a request with the token, honouring throttling and retrying transient failures.
    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Answer, DirectoryError> {
        let mut attempt = 0;
        let mut renewed = false;
        loop {
            attempt += 1;
            let token = self.access_token().await?;
            let mut rq = self
                .http
                .request(method.clone(), url)
                .bearer_auth(token.expose());
            for (k, v) in headers {
                rq = rq.header(*k, *v);
            }
            if let Some(b) = body {
                rq = rq.json(b);
            }
            let r = match rq.send().await {
                Ok(r) => r,
                Err(e) if attempt < self.cfg.max_attempts.min(3) && !e.is_connect() => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                Err(e) => return Err(self.net_error(url, &e)),
            };
            let status = r.status();
            let headers = r.headers().clone();
            if matches!(status.as_u16(), 429 | 503 | 504) {
                if attempt >= self.cfg.max_attempts {
                    let body = r.bytes().await.unwrap_or_default();
                    let (code, message) = graph_error_parts(&body);
                    return Err(DirectoryError::Graph {
                        url: url.to_string(),
                        status: status.as_u16(),
                        code,
                        message: format!(
                            "{message} (still throttled after {} attempts)",
                            self.cfg.max_attempts
                        ),
                    });
                }
                let wait = header(&headers, "retry-after")
                    .and_then(parse_retry_after)
                    .unwrap_or_else(|| backoff(attempt));
                self.throttled(&format!("{method} {}", short(url)), status, &headers, wait);
                drop(r);
                tokio::time::sleep(wait).await;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED && !renewed {
                // The cached token may have been revoked or expired early: sign in again once.
                renewed = true;
                *self.token.lock().await = None;
                continue;
            }
            let body = r
                .bytes()
                .await
                .map_err(|e| self.net_error(url, &e))?
                .to_vec();
            return Ok(Answer { status, body });
        }
    }

    /// A non-success answer as an error the operator can act on.
    fn fail(&self, url: &str, a: &Answer) -> DirectoryError {
        let (code, message) = graph_error_parts(&a.body);
        let message = match a.status.as_u16() {
            403 => format!(
                "{message} The app registration lacks an application permission with admin consent: reading needs User.Read.All, GroupMember.Read.All and Device.Read.All; exporting needs User.ReadWrite.All and Group.ReadWrite.All"
            ),
            401 => format!("{message} (the access token was rejected)"),
            _ => message,
        };
        DirectoryError::Graph {
            url: short(url).to_string(),
            status: a.status.as_u16(),
            code,
            message,
        }
    }

    /// Follows a page chain from `first`, handing each page's objects to `f`; returns the final
    /// deltaLink, if the chain was a delta.
    async fn pages(
        &self,
        first: String,
        mut f: impl FnMut(Vec<GObject>),
    ) -> Result<Option<String>, DirectoryError> {
        let mut url = first;
        let mut seen: FxHashSet<String> = FxHashSet::default();
        for _ in 0..MAX_PAGES {
            let a = self.send(Method::GET, &url, None, &[]).await?;
            if a.status == StatusCode::GONE {
                return Err(DirectoryError::DeltaReset {
                    url: short(&url).to_string(),
                });
            }
            if !a.status.is_success() {
                let (code, _) = graph_error_parts(&a.body);
                if code.eq_ignore_ascii_case("syncStateNotFound")
                    || code.eq_ignore_ascii_case("resyncRequired")
                {
                    return Err(DirectoryError::DeltaReset {
                        url: short(&url).to_string(),
                    });
                }
                return Err(self.fail(&url, &a));
            }
            let page: Page =
                serde_json::from_slice(&a.body).map_err(|e| DirectoryError::Graph {
                    url: short(&url).to_string(),
                    status: a.status.as_u16(),
                    code: "malformedResponse".into(),
                    message: format!(
                        "the answer is not the JSON page Graph sends: {e} (line {}, column {})",
                        e.line(),
                        e.column()
                    ),
                })?;
            f(page.value);
            match (page.next_link, page.delta_link) {
                (Some(next), _) => {
                    if !seen.insert(next.clone()) {
                        return Err(DirectoryError::Graph {
                            url: short(&url).to_string(),
                            status: a.status.as_u16(),
                            code: "endlessPaging".into(),
                            message: "the server sent an @odata.nextLink it had sent before: paging would never end".into(),
                        });
                    }
                    url = next;
                }
                (None, delta) => return Ok(delta),
            }
        }
        Err(DirectoryError::Graph {
            url: short(&url).to_string(),
            status: 200,
            code: "endlessPaging".into(),
            message: format!("more than {MAX_PAGES} pages: paging would never end"),
        })
    }

    /// Sends requests through `$batch`, 20 at a time, retrying items answered 429/503 after the
    /// longest `Retry-After` of their batch. Returns each request's (status, body) in order.
    async fn batch(&self, reqs: &[BatchReq]) -> Result<Vec<(u16, Value)>, DirectoryError> {
        let mut out: Vec<Option<(u16, Value)>> = vec![None; reqs.len()];
        let url = self.url("/$batch");
        let mut pending: Vec<usize> = (0..reqs.len()).collect();
        let mut attempt = 0;
        while !pending.is_empty() {
            attempt += 1;
            let mut again = Vec::new();
            let mut wait = Duration::ZERO;
            for chunk in pending.chunks(BATCH) {
                let body = json!({
                    "requests": chunk.iter().map(|&i| {
                        let r = &reqs[i];
                        let mut v = json!({"id": i.to_string(), "method": r.method, "url": r.url});
                        if let Some(b) = &r.body {
                            v["body"] = b.clone();
                            v["headers"] = json!({"Content-Type": "application/json"});
                        }
                        v
                    }).collect::<Vec<_>>()
                });
                let a = self.send(Method::POST, &url, Some(&body), &[]).await?;
                if !a.status.is_success() {
                    return Err(self.fail(&url, &a));
                }
                let v: Value =
                    serde_json::from_slice(&a.body).map_err(|e| DirectoryError::Graph {
                        url: short(&url).to_string(),
                        status: a.status.as_u16(),
                        code: "malformedResponse".into(),
                        message: format!("the $batch answer is not JSON: {e}"),
                    })?;
                let mut answered = FxHashSet::default();
                for item in batch_items(v) {
                    let i = item.index;
                    if !chunk.contains(&i) {
                        continue;
                    }
                    answered.insert(i);
                    let status = item.status;
                    if matches!(status, 429 | 503 | 504) && attempt < self.cfg.max_attempts {
                        let ra = item.retry_after.unwrap_or_else(|| backoff(attempt));
                        wait = wait.max(ra);
                        again.push(i);
                        self.throttled(
                            &format!("{} {} in a $batch", reqs[i].method, short(&reqs[i].url)),
                            StatusCode::from_u16(status).unwrap_or(StatusCode::TOO_MANY_REQUESTS),
                            &HeaderMap::new(),
                            ra,
                        );
                    } else {
                        out[i] = Some((status, item.body));
                    }
                }
                for &i in chunk {
                    if !answered.contains(&i) {
                        out[i] = Some((
                            0,
                            json!({"error": {"code": "noResponse", "message": "the $batch answer had no response for this request"}}),
                        ));
                    }
                }
            }
            if !again.is_empty() {
                tokio::time::sleep(wait).await;
            }
            pending = again;
        }
        Ok(out
            .into_iter()
            .map(|o| o.unwrap_or((0, Value::Null)))
            .collect())
    }

    fn resource(kind: ObjectKind) -> (&'static str, &'static str) {
        match kind {
            ObjectKind::User => ("users", USER_SELECT),
            ObjectKind::Group => ("groups", GROUP_SELECT),
            ObjectKind::Device => ("devices", DEVICE_SELECT),
        }
    }

    /// Reads the direct members of these groups (object ids), 20 groups per `$batch`.
    async fn members_of(
        &self,
        groups: &[String],
    ) -> Result<FxHashMap<String, Vec<String>>, DirectoryError> {
        let top = self.cfg.page_size;
        let reqs: Vec<BatchReq> = groups
            .iter()
            .map(|g| BatchReq {
                method: "GET",
                url: format!("/groups/{g}/members?$select=id&$top={top}"),
                body: None,
            })
            .collect();
        let answers = self.batch(&reqs).await?;
        let mut out = FxHashMap::default();
        for (g, (status, body)) in groups.iter().zip(answers) {
            if status == 404 {
                // Deleted since it was listed: the next import drops it.
                continue;
            }
            if !(200..300).contains(&status) {
                let url = self.url(&format!("/groups/{g}/members"));
                return Err(self.fail(
                    &url,
                    &Answer {
                        status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                        body: serde_json::to_vec(&body).unwrap_or_default(),
                    },
                ));
            }
            let page: Page = serde_json::from_value(body).unwrap_or_default();
            let mut ids: Vec<String> = page.value.into_iter().map(|m| m.id).collect();
            if let Some(next) = page.next_link {
                self.pages(next, |v| ids.extend(v.into_iter().map(|m| m.id)))
                    .await?;
            }
            out.insert(g.clone(), ids);
        }
        Ok(out)
    }

    fn to_object(kind: ObjectKind, g: GObject) -> DirObject {
        let name = g
            .display_name
            .clone()
            .or_else(|| g.user_principal_name.clone())
            .unwrap_or_else(|| g.id.clone());
        let mut o = DirObject::new(kind, g.id, name);
        o.upn = g.user_principal_name;
        o.mail = g.mail;
        o.sid = g.security_identifier.or_else(|| match kind {
            ObjectKind::User | ObjectKind::Group => entra_sid_from_object_id(&o.id).ok(),
            ObjectKind::Device => None,
        });
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                o.attrs.push((k.to_string(), v));
            }
        };
        put(
            "onPremisesSecurityIdentifier",
            g.on_premises_security_identifier,
        );
        put("onPremisesImmutableId", g.on_premises_immutable_id);
        put("employeeId", g.employee_id);
        put("givenName", g.given_name);
        put("surname", g.surname);
        put("mailNickname", g.mail_nickname);
        put("accountEnabled", g.account_enabled.map(|b| b.to_string()));
        put("securityEnabled", g.security_enabled.map(|b| b.to_string()));
        put("mailEnabled", g.mail_enabled.map(|b| b.to_string()));
        put("deviceId", g.device_id);
        put("operatingSystem", g.operating_system);
        put("operatingSystemVersion", g.operating_system_version);
        put("trustType", g.trust_type);
        for p in g.proxy_addresses.unwrap_or_default() {
            o.attrs.push(("proxyAddresses".into(), p));
        }
        o.normalise();
        o
    }

    /// The "sync from now" deltaLink of a resource.
    async fn latest_delta(&self, res: &str, select: &str) -> Result<String, DirectoryError> {
        let first = self.url(&format!("/{res}/delta?$select={select}&$deltaToken=latest"));
        self.pages(first, |_| {})
            .await?
            .ok_or_else(|| DirectoryError::Graph {
                url: format!("/{res}/delta"),
                status: 200,
                code: "noDeltaLink".into(),
                message: "the delta round ended without an @odata.deltaLink".into(),
            })
    }

    async fn full_import(&self, kinds: &[ObjectKind]) -> Result<Imported, DirectoryError> {
        let mut objects = Vec::new();
        let mut links = std::collections::BTreeMap::new();
        for &kind in kinds {
            let (res, select) = Self::resource(kind);
            // Groups track `members` too, so that a membership change surfaces in the delta.
            let delta_select = if kind == ObjectKind::Group {
                format!("{select},members")
            } else {
                select.to_string()
            };
            links.insert(
                kind.as_str().to_string(),
                self.latest_delta(res, &delta_select).await?,
            );
            let start = objects.len();
            let first = self.url(&format!(
                "/{res}?$select={select}&$top={}",
                self.cfg.page_size
            ));
            self.pages(first, |v| {
                objects.extend(v.into_iter().map(|g| Self::to_object(kind, g)));
            })
            .await?;
            if kind == ObjectKind::Group {
                let ids: Vec<String> = objects[start..].iter().map(|o| o.id.clone()).collect();
                let mut members = self.members_of(&ids).await?;
                for o in &mut objects[start..] {
                    o.members = members.remove(&o.id).unwrap_or_default();
                }
            }
        }
        Ok(Imported {
            objects,
            full: true,
            watermark: serde_json::to_string(&links).ok(),
            removed: Vec::new(),
            logs: Vec::new(),
        })
    }

    async fn delta_import(
        &self,
        kinds: &[ObjectKind],
        links: std::collections::BTreeMap<String, String>,
    ) -> Result<Imported, DirectoryError> {
        let mut objects = Vec::new();
        let mut removed = Vec::new();
        let mut logs = Vec::new();
        let mut next_links = std::collections::BTreeMap::new();
        for &kind in kinds {
            let Some(link) = links.get(kind.as_str()) else {
                return Err(DirectoryError::DeltaReset {
                    url: format!("(no deltaLink stored for {kind}s)"),
                });
            };
            // Last state wins: an object may appear on several pages (Graph replays).
            let mut changed: FxHashMap<String, GObject> = FxHashMap::default();
            let mut gone: FxHashMap<String, String> = FxHashMap::default();
            let new_link = self
                .pages(link.clone(), |v| {
                    for g in v {
                        if let Some(r) = &g.removed {
                            changed.remove(&g.id);
                            gone.insert(g.id.clone(), r.reason.clone());
                        } else {
                            gone.remove(&g.id);
                            changed.insert(g.id.clone(), g);
                        }
                    }
                })
                .await?;
            next_links.insert(
                kind.as_str().to_string(),
                new_link.unwrap_or_else(|| link.clone()),
            );
            let start = objects.len();
            let mut ids: Vec<String> = changed.keys().cloned().collect();
            ids.sort();
            for id in &ids {
                if let Some(g) = changed.remove(id) {
                    objects.push(Self::to_object(kind, g));
                }
            }
            if kind == ObjectKind::Group && !ids.is_empty() {
                let mut members = self.members_of(&ids).await?;
                for o in &mut objects[start..] {
                    o.members = members.remove(&o.id).unwrap_or_default();
                }
            }
            let mut gone: Vec<(String, String)> = gone.into_iter().collect();
            gone.sort();
            for (id, reason) in gone {
                logs.push(LogEntry::info(
                    "removed",
                    format!(
                        "{kind} {id} was {} in `{}`",
                        if reason == "changed" {
                            "soft-deleted (restorable for 30 days)"
                        } else {
                            "deleted"
                        },
                        self.cfg.name
                    ),
                ));
                removed.push((kind, id));
            }
        }
        Ok(Imported {
            objects,
            full: false,
            watermark: serde_json::to_string(&next_links).ok(),
            removed,
            logs,
        })
    }

    /// The writes of one export as `$batch` requests, with what to do with each answer.
    fn create_request(
        &self,
        kind: ObjectKind,
        name: &str,
        attributes: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> Result<(BatchReq, Option<(String, Secret)>), String> {
        let mut body = serde_json::Map::new();
        for (k, v) in attributes {
            if let Some(a) = graph_attr(k)
                && !v.is_empty()
            {
                body.insert(a.clone(), graph_value(&a, v));
            }
        }
        body.entry("displayName")
            .or_insert_with(|| Value::String(name.to_string()));
        match kind {
            ObjectKind::User => {
                let upn = match body.get("userPrincipalName").and_then(Value::as_str) {
                    Some(u) => u.to_string(),
                    None => {
                        let domain = self
                            .cfg
                            .upn_domain
                            .clone()
                            .or_else(|| {
                                body.get("mail")
                                    .and_then(Value::as_str)
                                    .and_then(|m| m.split_once('@'))
                                    .map(|(_, d)| d.to_string())
                            })
                            .ok_or("no userPrincipalName: map `upn` in the profile's attributes, or set upn_domain on the target directory")?;
                        let u = format!("{}@{domain}", nickname(name));
                        body.insert("userPrincipalName".into(), Value::String(u.clone()));
                        u
                    }
                };
                body.entry("mailNickname")
                    .or_insert_with(|| Value::String(nickname(&upn)));
                body.entry("accountEnabled").or_insert(Value::Bool(true));
                let password = initial_password();
                body.insert(
                    "passwordProfile".into(),
                    json!({"forceChangePasswordNextSignIn": true, "password": password.expose()}),
                );
                Ok((
                    BatchReq {
                        method: "POST",
                        url: "/users".into(),
                        body: Some(Value::Object(body)),
                    },
                    Some((upn, password)),
                ))
            }
            ObjectKind::Group => {
                body.entry("mailNickname")
                    .or_insert_with(|| Value::String(nickname(name)));
                body.entry("mailEnabled").or_insert(Value::Bool(false));
                body.entry("securityEnabled").or_insert(Value::Bool(true));
                Ok((
                    BatchReq {
                        method: "POST",
                        url: "/groups".into(),
                        body: Some(Value::Object(body)),
                    },
                    None,
                ))
            }
            ObjectKind::Device => Err(
                "devices cannot be created through Graph: they register themselves when they join the tenant"
                    .into(),
            ),
        }
    }

    fn member_requests(&self, group: &str, add: &[String], remove: &[String]) -> Vec<BatchReq> {
        let graph = self.url("");
        add.iter()
            .map(|m| BatchReq {
                method: "POST",
                url: format!("/groups/{group}/members/$ref"),
                body: Some(json!({"@odata.id": format!("{graph}/directoryObjects/{m}")})),
            })
            .chain(remove.iter().map(|m| BatchReq {
                method: "DELETE",
                url: format!("/groups/{group}/members/{m}/$ref"),
                body: None,
            }))
            .collect()
    }

    fn update_request(kind: ObjectKind, target: &str, changes: &[AttrChange]) -> Option<BatchReq> {
        let mut body = serde_json::Map::new();
        for c in changes {
            if c.attribute == "members" {
                continue;
            }
            if let Some(a) = graph_attr(&c.attribute) {
                body.insert(a.clone(), graph_value(&a, &c.new));
            }
        }
        let (res, _) = Self::resource(kind);
        (!body.is_empty()).then(|| BatchReq {
            method: "PATCH",
            url: format!("/{res}/{target}"),
            body: Some(Value::Object(body)),
        })
    }
}

/// A URL without the host, for messages (`/v1.0/users?...`).
fn short(url: &str) -> &str {
    url.find("/v1.0").map_or(url, |i| &url[i..])
}

fn batch_error(status: u16, body: &Value) -> String {
    let e = &body["error"];
    format!(
        "HTTP {status} {}: {}",
        e["code"].as_str().unwrap_or_default(),
        e["message"].as_str().unwrap_or_default()
    )
}

#[async_trait]
impl Connector for GraphConnector {
    async fn import(
        &self,
        kinds: &[ObjectKind],
        since: Option<&str>,
    ) -> Result<Imported, DirectoryError> {
        let links = since.and_then(|s| {
            serde_json::from_str::<std::collections::BTreeMap<String, String>>(s).ok()
        });
        let mut result = match links {
            Some(links) => match self.delta_import(kinds, links).await {
                Err(DirectoryError::DeltaReset { url }) => {
                    let mut full = self.full_import(kinds).await?;
                    full.logs.push(LogEntry::warning(
                        "delta-reset",
                        format!(
                            "the delta token of `{}` expired or was reset ({url}): a full import ran instead",
                            self.cfg.name
                        ),
                    ));
                    full
                }
                r => r?,
            },
            None => self.full_import(kinds).await?,
        };
        result.logs.extend(self.take_throttle_logs());
        Ok(result)
    }

    async fn export(
        &self,
        writes: &[Write],
        targets: &[DirObject],
    ) -> Result<ExportReport, DirectoryError> {
        let mut report = ExportReport::default();
        let current: FxHashMap<&str, &DirObject> =
            targets.iter().map(|o| (o.id.as_str(), o)).collect();
        // 1. Creates, 20 per round trip.
        let mut creates = Vec::new();
        let mut meta = Vec::new();
        for w in writes {
            if let Write::Create {
                kind,
                name,
                attributes,
                members,
                source_id,
            } = w
            {
                match self.create_request(*kind, name, attributes) {
                    Ok((rq, pw)) => {
                        creates.push(rq);
                        meta.push((w, pw, members, source_id));
                    }
                    Err(msg) => {
                        report.logs.push(LogEntry::error(
                            "export",
                            format!("create of {kind} {source_id} failed: {msg}"),
                        ));
                        report.failed.push((source_id.clone(), msg));
                    }
                }
            }
        }
        let answers = self.batch(&creates).await?;
        let mut member_reqs: Vec<(String, BatchReq)> = Vec::new();
        for ((w, pw, members, source_id), (status, body)) in meta.into_iter().zip(answers) {
            if (200..300).contains(&status) {
                let id = body["id"].as_str().unwrap_or_default().to_string();
                report.applied += 1;
                let shown = body["userPrincipalName"]
                    .as_str()
                    .or(body["displayName"].as_str())
                    .unwrap_or_default();
                report.logs.push(LogEntry::info(
                    "created",
                    format!("created {} {shown} ({id}) for {source_id}", w.kind()),
                ));
                if let Some((upn, pw)) = pw {
                    report.initial_passwords.push((upn, pw));
                }
                for rq in self.member_requests(&id, members, &[]) {
                    member_reqs.push((source_id.clone(), rq));
                }
            } else {
                let msg = batch_error(status, &body);
                report.logs.push(LogEntry::error(
                    "export",
                    format!("create of {} {source_id} failed: {msg}", w.kind()),
                ));
                report.failed.push((source_id.clone(), msg));
            }
        }
        // 2. Updates: attributes by PATCH, members by $ref.
        let mut updates: Vec<(&Write, BatchReq)> = Vec::new();
        for w in writes {
            if let Write::Update {
                kind,
                target_id,
                changes,
                source_id,
                ..
            } = w
            {
                if let Some(rq) = Self::update_request(*kind, target_id, changes) {
                    updates.push((w, rq));
                }
                for c in changes.iter().filter(|c| c.attribute == "members") {
                    let now: FxHashSet<&String> = current
                        .get(target_id.as_str())
                        .map(|o| o.members.iter().collect())
                        .unwrap_or_default();
                    let add: Vec<String> =
                        c.new.iter().filter(|m| !now.contains(m)).cloned().collect();
                    let remove: Vec<String> = c
                        .old
                        .iter()
                        .filter(|m| !c.new.contains(m) && now.contains(m))
                        .cloned()
                        .collect();
                    for rq in self.member_requests(target_id, &add, &remove) {
                        member_reqs.push((source_id.clone(), rq));
                    }
                }
            }
        }
        let reqs: Vec<BatchReq> = updates.iter().map(|(_, r)| r.clone()).collect();
        let answers = self.batch(&reqs).await?;
        let mut update_failed: FxHashSet<String> = FxHashSet::default();
        for ((w, rq), (status, body)) in updates.into_iter().zip(answers) {
            if (200..300).contains(&status) {
                report.logs.push(LogEntry::info(
                    "updated",
                    format!("updated {} {} ({})", w.kind(), rq.url, w.source_id()),
                ));
            } else {
                let msg = batch_error(status, &body);
                report.logs.push(LogEntry::error(
                    "export",
                    format!("update of {} {} failed: {msg}", w.kind(), w.source_id()),
                ));
                update_failed.insert(w.source_id().to_string());
                report.failed.push((w.source_id().to_string(), msg));
            }
        }
        let reqs: Vec<BatchReq> = member_reqs.iter().map(|(_, r)| r.clone()).collect();
        let answers = self.batch(&reqs).await?;
        let mut changed = 0;
        for ((source_id, rq), (status, body)) in member_reqs.iter().zip(answers) {
            // Adding a member that is already there is not a failure.
            let already = status == 400
                && body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("already exist"));
            if (200..300).contains(&status) || already || (status == 404 && rq.method == "DELETE") {
                changed += 1;
            } else {
                let msg = batch_error(status, &body);
                report.logs.push(LogEntry::error(
                    "export",
                    format!(
                        "membership change {} {} for {source_id} failed: {msg}",
                        rq.method, rq.url
                    ),
                ));
                update_failed.insert(source_id.clone());
                report.failed.push((source_id.clone(), msg));
            }
        }
        // An update is applied when its attributes and its membership changes all went through.
        report.applied += writes
            .iter()
            .filter(|w| matches!(w, Write::Update { .. }) && !update_failed.contains(w.source_id()))
            .count();
        if changed > 0 {
            report.logs.push(LogEntry::info(
                "updated",
                format!("{changed} group membership change(s) applied"),
            ));
        }
        report.logs.extend(self.take_throttle_logs());
        Ok(report)
    }

    async fn test(&self) -> Result<TestReport, DirectoryError> {
        let mut checks = Vec::new();
        self.access_token().await?;
        checks.push(format!(
            "signed in to tenant {} as application {} at {}",
            self.cfg.tenant_id,
            self.cfg.client_id,
            self.cfg.login_url()
        ));
        let mut counts = Vec::new();
        for &kind in &self.cfg.object_types {
            let (res, _) = Self::resource(kind);
            let url = self.url(&format!("/{res}/$count"));
            let a = self
                .send(Method::GET, &url, None, &[("ConsistencyLevel", "eventual")])
                .await?;
            if !a.status.is_success() {
                return Err(self.fail(&url, &a));
            }
            let n = String::from_utf8_lossy(&a.body)
                .trim()
                .trim_start_matches('\u{feff}')
                .parse::<u64>()
                .unwrap_or(0);
            checks.push(format!("can read {res} ({n})"));
            counts.push((kind, n));
        }
        Ok(TestReport {
            ok: true,
            checks,
            counts,
        })
    }

    fn supports_delta(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_decimal_and_http_date() {
        assert_eq!(
            parse_retry_after("2.128"),
            Some(Duration::from_millis(2128))
        );
        assert_eq!(parse_retry_after("0.1"), Some(Duration::from_millis(100)));
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("soon"), None);
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(30);
        let s = jiff::fmt::rfc2822::to_string(&later.to_zoned(jiff::tz::TimeZone::UTC)).unwrap();
        let d = parse_retry_after(&s).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for a in 1..20 {
            let d = backoff(a);
            assert!(d <= Duration::from_secs(30), "{a}: {d:?}");
        }
        assert!(backoff(1) <= Duration::from_secs(1));
        assert!(backoff(6) >= Duration::from_secs(15));
    }

    #[test]
    fn initial_passwords_are_complex_and_different() {
        let a = initial_password();
        let b = initial_password();
        assert_ne!(a.expose(), b.expose());
        let p = a.expose();
        assert_eq!(p.len(), 20);
        assert!(p.chars().any(|c| c.is_ascii_uppercase()));
        assert!(p.chars().any(|c| c.is_ascii_lowercase()));
        assert!(p.chars().any(|c| c.is_ascii_digit()));
        assert!(p.chars().any(|c| !c.is_ascii_alphanumeric()));
        assert!(!format!("{a:?}").contains(p));
    }

    #[test]
    fn documented_bodies_parse() {
        // The paged users example of Microsoft's paging walkthrough.
        let page: Page = serde_json::from_str(r#"{
          "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users",
          "@odata.nextLink": "https://graph.microsoft.com/v1.0/users?$top=3&$skiptoken=X%2744537074020001000000223A416C657857404D333635783939353035322E4F6E4D6963726F736F66742E636F6D29557365725F33613166623664392D373666342D346233352D623139332D333764643136373530396233B900000000000000000000%27",
          "value": [ { "id": "c25b1eaf-eb49-4f66-90a1-aa41be4d993a", "displayName": "Adele Vance", "...": "..." } ]
        }"#).unwrap();
        assert!(page.next_link.as_deref().unwrap().ends_with("%27"));
        let o = GraphConnector::to_object(ObjectKind::User, page.value.into_iter().next().unwrap());
        assert_eq!(o.name, "Adele Vance");
        assert_eq!(
            o.sid.as_deref(),
            entra_sid_from_object_id("c25b1eaf-eb49-4f66-90a1-aa41be4d993a")
                .ok()
                .as_deref()
        );
        // Devices (device-list).
        let page: Page = serde_json::from_str(r#"{"value": [{"accountEnabled": false, "deviceId": "4c299165-6e8f-4b45-a5ba-c5d250a707ff",
            "displayName": "Test device", "id": "id-value", "operatingSystem": "linux", "operatingSystemVersion": "1"}]}"#).unwrap();
        let d =
            GraphConnector::to_object(ObjectKind::Device, page.value.into_iter().next().unwrap());
        assert_eq!(
            d.attr("deviceId"),
            Some("4c299165-6e8f-4b45-a5ba-c5d250a707ff")
        );
        assert_eq!(d.attr("accountEnabled"), Some("false"));
        assert_eq!(d.sid, None);
        // Users delta, first page: a removed item among changed ones.
        let page: Page = serde_json::from_str(r#"{
          "@odata.context":"https://graph.microsoft.com/v1.0/$metadata#users(displayName,givenName,surname)",
          "@odata.nextLink":"https://graph.microsoft.com/v1.0/users/delta?$skiptoken=oEBwdSP6uehIAxQOWq_3Ksh_TLol6KIm3stvdc6hGhZRi1hQ7Spe__dpvm3U4zReE4CYXC2zOtaKdi7KHlUtC2CbRiBIUwOxPKLa",
          "value": [
            { "displayName":"Cameron White", "givenName":"Cameron", "surname":"White", "id":"ffff7b1a-13b6-477b-8c0c-380905cd99f7" },
            { "id": "86462606-fde0-4fc4-9e0c-a20eb73e54c6", "@removed": { "reason": "deleted" } },
            { "displayName": "Conf Room Adams", "id": "6ea91a8d-e32e-41a1-b7bd-d2d185eed0e0" }
          ]
        }"#).unwrap();
        assert_eq!(page.value.len(), 3);
        assert_eq!(page.value[1].removed.as_ref().unwrap().reason, "deleted");
        assert!(page.delta_link.is_none());
        // Users delta, final page.
        let page: Page = serde_json::from_str(r#"{
          "@odata.context":"https://graph.microsoft.com/v1.0/$metadata#users",
          "@odata.deltaLink":"https://graph.microsoft.com/v1.0/users/delta?$deltatoken=oEcOySpF_hWYmTIUZBOIfPzcwisr_rPe8o9M54L45qEXQGmvQC6T2dbL-9O7nSU-njKhFiGlAZqewNAThmCVnNxqPu5gOBegrm1CaVZ-ZtFZ2tPOAO98OD9y0ao460",
          "value": [ { "displayName":"Lidia Holloway", "givenName":"Lidia", "surname":"Holloway", "id":"25dcffff-959e-4ece-9973-e5d9b800e8cc" } ]
        }"#).unwrap();
        assert!(page.delta_link.unwrap().contains("$deltatoken="));
        // Groups delta with members@delta.
        let page: Page = serde_json::from_str(r##"{
          "@odata.context":"https://graph.microsoft.com/v1.0/$metadata#groups",
          "@odata.deltaLink":"https://graph.microsoft.com/v1.0/groups/delta?$deltatoken=sZwAFZibx-LQOdZIo1hHhmmDhHzCY0Hs6snoIHJCSIfCHdqKdWNZ2VX3kErpyna9GygROwBk-rqWWMFxJC3pw",
          "value": [ { "displayName": "TestGroup3", "description": "A test group for change tracking", "id": "2e5807ce-58f3-4a94-9b37-ffff2e085957",
              "members@delta": [
                { "@odata.type": "#microsoft.graph.user", "id": "632f6bb2-3ec8-4c1f-9073-0027a8c6859", "@removed": { "reason": "deleted" } },
                { "@odata.type": "#microsoft.graph.user", "id": "37de1ae3-408f-4702-8636-20824abda004" } ] } ]
        }"##).unwrap();
        let m = page.value[0].members_delta.as_ref().unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].odata_type.as_deref(), Some("#microsoft.graph.user"));
        assert!(m[0].removed.is_some() && m[1].removed.is_none());
        // The throttling sample body and the batch error body give their code and message.
        let (code, msg) = graph_error_parts(br#"{"error": {"code": "TooManyRequests", "innerError": {"code": "429", "date": "2020-08-18T12:51:51",
            "message": "Please retry after", "request-id": "94fb3b52-452a-4535-a601-69e0a90e3aa2", "status": "429"}, "message": "Please retry again later."}}"#);
        assert_eq!(
            (code.as_str(), msg.as_str()),
            ("TooManyRequests", "Please retry again later.")
        );
        let body: Value = serde_json::from_str(r#"{ "error": { "code": "Authorization_RequestDenied",
            "message": "Insufficient privileges to complete the operation.",
            "innerError": { "date": "2025-02-13T10:17:06", "request-id": "93b6f17e-c05d-4f45-ad2a-6665c708d8a0" } } }"#).unwrap();
        assert_eq!(
            batch_error(403, &body),
            "HTTP 403 Authorization_RequestDenied: Insufficient privileges to complete the operation."
        );
    }

    #[test]
    fn documented_token_answers() {
        // Success (any credential type), verbatim from the Entra doc.
        let (t, life) = read_token_answer(
            StatusCode::OK,
            br#"{"token_type": "Bearer", "expires_in": 3599, "access_token": "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiIsIng1dCI6Ik1uQ19WWmNBVGZNNXBP..."}"#,
        )
        .unwrap();
        assert_eq!(life, 3599);
        assert!(t.expose().starts_with("eyJ0eXAi"));
        assert!(!format!("{t:?}").contains("eyJ0eXAi"), "a token in Debug");
        // The documented 400.
        let (code, detail) = read_token_answer(
            StatusCode::BAD_REQUEST,
            br#"{
  "error": "invalid_scope",
  "error_description": "AADSTS70011: The provided value for the input parameter 'scope' is not valid. The scope https://foo.microsoft.com/.default is not valid.\r\nTrace ID: 255d1aef-8c98-452f-ac51-23d051240864\r\nCorrelation ID: fb3d2015-bc17-4bb9-bb85-30c5cf1aaaa7\r\nTimestamp: 2016-01-09 02:02:12Z",
  "error_codes": [70011],
  "timestamp": "YYYY-MM-DD HH:MM:SSZ",
  "trace_id": "255d1aef-8c98-452f-ac51-23d051240864",
  "correlation_id": "fb3d2015-bc17-4bb9-bb85-30c5cf1aaaa7"
}"#,
        )
        .unwrap_err();
        assert_eq!(code, "AADSTS70011");
        assert!(detail.starts_with("the scope is not valid"), "{detail}");
        assert!(detail.contains("The scope https://foo.microsoft.com/.default is not valid."));
        assert!(
            !detail.contains("Trace ID"),
            "only the first line: {detail}"
        );
        // Not JSON (a proxy's error page).
        let (code, detail) =
            read_token_answer(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>").unwrap_err();
        assert_eq!(code, "HTTP 502");
        assert!(detail.contains("did not answer JSON: <html>"), "{detail}");
    }

    #[test]
    fn documented_batch_answer() {
        // The batching page's response example (abridged there too), plus a throttled item.
        let v: Value = serde_json::from_str(r#"{
  "responses": [
    { "id": "3", "status": 403,
      "headers": { "Cache-Control": "no-cache", "x-ms-resource-unit": "1", "Content-Type": "application/json" },
      "body": { "error": { "code": "Authorization_RequestDenied",
                           "message": "Insufficient privileges to complete the operation.",
                           "innerError": { "date": "2025-02-13T10:17:06", "request-id": "93b6f17e-c05d-4f45-ad2a-6665c708d8a0",
                                           "client-request-id": "e70c5c1b-8b47-68c0-3171-3d22f5e0bd54" } } } },
    { "id": "5", "status": 200,
      "headers": { "Cache-Control": "no-cache", "x-ms-resource-unit": "1", "OData-Version": "4.0",
                   "Content-Type": "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8" },
      "body": { "@odata.context": "https://graph.microsoft.com/beta/$metadata#users(id,displayName,userPrincipalName)",
                "@odata.count": 36,
                "value": [ { "id": "10a1d484-cd1a-4162-a5a4-832370bac356", "displayName": "Lynne Robbins", "userPrincipalName": "LynneR@contoso.com" } ] } },
    { "id": "7", "status": 429, "headers": { "Retry-After": "2.128" }, "body": {} },
    { "id": "not-ours", "status": 200, "body": {} }
  ]
}"#).unwrap();
        let items = batch_items(v);
        assert_eq!(items.len(), 3);
        assert_eq!((items[0].index, items[0].status), (3, 403));
        assert_eq!(
            batch_error(items[0].status, &items[0].body),
            "HTTP 403 Authorization_RequestDenied: Insufficient privileges to complete the operation."
        );
        let page: Page = serde_json::from_value(items[1].body.clone()).unwrap();
        assert_eq!(
            page.value[0].user_principal_name.as_deref(),
            Some("LynneR@contoso.com")
        );
        assert_eq!(items[2].retry_after, Some(Duration::from_millis(2128)));
        assert!(items[0].retry_after.is_none());
        assert!(batch_items(json!({"error": "x"})).is_empty());
    }

    #[test]
    fn aadsts_codes_have_meanings() {
        assert!(aadsts_meaning(7000215).contains("client secret"));
        assert!(aadsts_meaning(90002).contains("tenant"));
        assert!(aadsts_meaning(700016).contains("client_id"));
        assert!(aadsts_meaning(1).contains("description"));
    }

    #[test]
    fn writes_use_graph_names() {
        assert_eq!(graph_attr("name").as_deref(), Some("displayName"));
        assert_eq!(graph_attr("upn").as_deref(), Some("userPrincipalName"));
        assert_eq!(graph_attr("employeeId").as_deref(), Some("employeeId"));
        assert_eq!(graph_attr("proxyAddresses"), None);
        assert_eq!(graph_attr("sid"), None);
        assert_eq!(
            graph_value("accountEnabled", &["TRUE".into()]),
            Value::Bool(true)
        );
        assert_eq!(nickname("Ann O'Neil@x"), "AnnONeil");
    }
}
