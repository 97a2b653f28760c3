//! The admin CLI's HTTP client: every admin command is a call to the server's API.

use anyhow::{Context, Result, anyhow, bail};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use std::path::Path;

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// The token: `--token`/`FERRY_TOKEN`, else an admin-token file in the usual data directories.
fn find_token(given: Option<String>) -> Option<String> {
    given.or_else(|| {
        [
            "ferry-data/admin-token",
            "ferry-quickstart/data/admin-token",
        ]
        .iter()
        .find_map(|p| std::fs::read_to_string(Path::new(p)).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
    })
}

impl Client {
    pub fn new(server: &str, token: Option<String>) -> Result<Client> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Client {
            http,
            base: format!("{}/api/v1", server.trim_end_matches('/')),
            token: find_token(token),
        })
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<serde_json::Value>,
    ) -> Result<reqwest::Response> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .query(query);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.finish(req).await
    }

    /// The server's own URL (without `/api/v1`).
    pub fn server(&self) -> &str {
        self.base.trim_end_matches("/api/v1")
    }

    /// Sends raw bytes (a file) as the body.
    pub async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<reqwest::Response> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .query(query)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        self.finish(req).await
    }

    async fn finish(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() {
                anyhow!("cannot reach the ferry server at {}: is it running? (start it with `ferry server`, or give --server / FERRY_SERVER)", self.base)
            } else {
                anyhow!(e)
            }
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        let msg = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(text);
        if status == StatusCode::UNAUTHORIZED {
            bail!(
                "{msg} (give --token or FERRY_TOKEN; the server writes its admin token to DATA_DIR/admin-token)"
            );
        }
        bail!("{msg} (HTTP {})", status.as_u16())
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T> {
        self.send(Method::GET, path, query, None)
            .await?
            .json()
            .await
            .context("the server's answer was not what this ferry expects")
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: Option<serde_json::Value>,
    ) -> Result<T> {
        self.send(Method::POST, path, query, body)
            .await?
            .json()
            .await
            .context("the server's answer was not what this ferry expects")
    }
}
