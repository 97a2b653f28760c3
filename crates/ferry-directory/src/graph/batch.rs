//! `$batch`: requests 20 at a time, items answered 429/503 retried after their batch's longest
//! `Retry-After`, answers taken in the order of the requests.

use super::*;

/// One request of a `$batch`.
#[derive(Clone, Debug)]
pub(super) struct BatchReq {
    pub(super) method: &'static str,
    /// Relative to `/v1.0`, e.g. `/users`.
    pub(super) url: String,
    pub(super) body: Option<Value>,
}

/// One response of a `$batch` answer.
#[derive(Debug)]
pub(super) struct BatchItem {
    /// The request's id (ferry numbers its requests).
    pub(super) index: usize,
    pub(super) status: u16,
    /// The item's own `Retry-After`, from its `headers`.
    pub(super) retry_after: Option<Duration>,
    pub(super) body: Value,
}

/// The responses of a `$batch` answer, in the order they came (Graph may reorder them).
pub(super) fn batch_items(v: Value) -> Vec<BatchItem> {
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

pub(super) fn batch_error(status: u16, body: &Value) -> String {
    let e = &body["error"];
    format!(
        "HTTP {status} {}: {}",
        e["code"].as_str().unwrap_or_default(),
        e["message"].as_str().unwrap_or_default()
    )
}

impl GraphConnector {
    /// Sends requests through `$batch`, 20 at a time, retrying items answered 429/503 after the
    /// longest `Retry-After` of their batch. Returns each request's (status, body) in order.
    pub(super) async fn batch(
        &self,
        reqs: &[BatchReq],
    ) -> Result<Vec<(u16, Value)>, DirectoryError> {
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
}
