//! Graph over HTTP: requests with the token, throttling (`Retry-After`, backoff with jitter),
//! transient failures, errors an operator can act on, and page chains.

use super::*;

/// This process's calls to Microsoft Graph, for the server's `/metrics`. Process-wide: a server
/// talks to Graph through one client per directory, and Prometheus counts the process.
pub struct GraphStats {
    /// Answers by status class (`1xx` … `5xx`), and calls that got no answer (index 0).
    answers: [AtomicU64; 6],
    throttled: AtomicU64,
    /// The waits throttling asked for (`Retry-After`, or the backoff without one), in ms.
    waited_ms: AtomicU64,
}

/// A snapshot of [`GraphStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GraphCounts {
    /// Requests by answer: no answer, then `1xx` … `5xx`.
    pub requests: [u64; 6],
    pub throttled: u64,
    pub waited_ms: u64,
}

pub static STATS: GraphStats = GraphStats {
    answers: [const { AtomicU64::new(0) }; 6],
    throttled: AtomicU64::new(0),
    waited_ms: AtomicU64::new(0),
};

impl GraphStats {
    fn answered(&self, status: Option<u16>) {
        let class = status.map_or(0, |s| usize::from(s / 100).clamp(1, 5));
        self.answers[class].fetch_add(1, Ordering::Relaxed);
    }

    fn throttled(&self, wait: Duration) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
        self.waited_ms
            .fetch_add(wait.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn counts(&self) -> GraphCounts {
        GraphCounts {
            requests: std::array::from_fn(|i| self.answers[i].load(Ordering::Relaxed)),
            throttled: self.throttled.load(Ordering::Relaxed),
            waited_ms: self.waited_ms.load(Ordering::Relaxed),
        }
    }
}

/// An HTTP answer, read whole.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: Vec<u8>,
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

pub(super) fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Exponential backoff with full jitter: attempt 1 → up to 0.5 s, doubling, capped at 30 s.
pub(super) fn backoff(attempt: u32) -> Duration {
    let cap = (0.5 * f64::from(1u32 << attempt.min(6))).min(30.0);
    let mut b = [0u8; 4];
    let r = if getrandom::fill(&mut b).is_ok() {
        f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX)
    } else {
        0.5
    };
    Duration::from_secs_f64(cap * (0.5 + r / 2.0))
}

/// Graph's error body: `{"error": {"code": "...", "message": "..."}}`.
pub(super) fn graph_error_parts(body: &[u8]) -> (String, String) {
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

impl GraphConnector {
    pub(super) fn net_error(&self, url: &str, e: &reqwest::Error) -> DirectoryError {
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

    pub(super) fn throttled(
        &self,
        what: &str,
        status: StatusCode,
        headers: &HeaderMap,
        wait: Duration,
    ) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        STATS.throttled(wait);
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

    pub(super) fn take_throttle_logs(&self) -> Vec<LogEntry> {
        self.throttles
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default()
    }

    /// Sends a request with the token, honouring throttling and retrying transient failures.
    pub(super) async fn send(
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
            let sent = rq.send().await;
            STATS.answered(sent.as_ref().ok().map(|r| r.status().as_u16()));
            let r = match sent {
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
    pub(super) fn fail(&self, url: &str, a: &Answer) -> DirectoryError {
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
    pub(super) async fn pages(
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
}
