//! Sign-in: OAuth 2.0 client credentials with a client secret or a PS256 client assertion, the
//! token cached until a minute before it expires, AADSTS codes explained.

use super::*;

/// The meaning of common AADSTS codes, in words an operator acts on.
pub(super) fn aadsts_meaning(code: u64) -> &'static str {
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

/// A token endpoint's answer: the access token and its lifetime in seconds, or the error code
/// (`AADSTS…` when there is one) and what it means. `{url}` in the message stands for the endpoint.
pub(super) fn read_token_answer(
    status: StatusCode,
    body: &[u8],
) -> Result<(Secret, u64), (String, String)> {
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

pub(super) fn base64url(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

impl GraphConnector {
    /// The client assertion: a PS256 JWT signed with the app's certificate key.
    pub(super) fn client_assertion(&self, token_url: &str) -> Result<String, DirectoryError> {
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
    pub(super) async fn access_token(&self) -> Result<Secret, DirectoryError> {
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
}
