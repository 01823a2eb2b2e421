//! `Idempotency-Key` (Iceberg REST 1.11): a retried mutation with the same key gets the
//! first answer and changes nothing more.
//!
//! Keys are scoped to the principal and the endpoint, so one caller can neither replay nor
//! block another's. Requests with one key run one at a time: a retry that arrives while
//! the first is still running waits for its answer. Final answers (2xx and 4xx) are kept
//! for the key lifetime, in memory; a 5xx is not kept, so a retry runs again. For a commit
//! that adds snapshots a rerun is still safe without the stored answer (after a 5xx, or a
//! server restart): the driver finds the snapshots already in the table and commits
//! nothing. A commit that adds no snapshot (properties, schema) is then applied again on
//! the current head, which for property sets gives the same state. A second request with a
//! key already used gets the first answer even if its body differs (the body is not
//! compared).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::Error;

/// The header clients send.
pub const HEADER: &str = "idempotency-key";

#[derive(Debug, Clone)]
struct Stored {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

type Slot = Arc<tokio::sync::Mutex<Option<(Instant, Stored)>>>;

/// First answers by (principal, endpoint, key).
#[derive(Debug, Default)]
pub struct Replays {
    slots: Mutex<HashMap<(String, String, String), Slot>>,
}

/// The key of a request, if it sent one; an invalid one is refused.
pub fn key(headers: &HeaderMap) -> Result<Option<String>, Error> {
    let Some(v) = headers.get(HEADER) else {
        return Ok(None);
    };
    let v = v
        .to_str()
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_graphic()))
        .ok_or_else(|| {
            Error::BadRequest(
                "Idempotency-Key must be 1 to 128 visible ASCII characters (a UUID)".into(),
            )
        })?;
    Ok(Some(v.to_string()))
}

impl Replays {
    /// Run `work` once per key within `lifetime`; replay its answer to retries.
    pub async fn run<F>(
        &self,
        principal: &str,
        endpoint: &str,
        key: Option<String>,
        lifetime: Duration,
        work: F,
    ) -> Response
    where
        F: Future<Output = Response>,
    {
        let Some(key) = key else {
            return work.await;
        };
        let slot = {
            let mut slots = self
                .slots
                .lock()
                .expect("the replay lock is never poisoned");
            slots.retain(|_, s| match s.try_lock() {
                Ok(g) => g.as_ref().is_some_and(|(at, _)| at.elapsed() < lifetime),
                Err(_) => true,
            });
            slots
                .entry((principal.to_string(), endpoint.to_string(), key))
                .or_default()
                .clone()
        };
        let mut guard = slot.lock().await;
        if let Some((at, stored)) = guard.as_ref() {
            if at.elapsed() < lifetime {
                let mut response =
                    (stored.status, stored.headers.clone(), stored.body.clone()).into_response();
                response
                    .headers_mut()
                    .insert("idempotent-replay", HeaderValue::from_static("true"));
                return response;
            }
        }
        let response = work.await;
        if response.status().is_server_error() {
            return response;
        }
        let (parts, body) = response.into_parts();
        let body = match axum::body::to_bytes(body, usize::MAX).await {
            Ok(b) => b,
            Err(e) => {
                return Error::Internal(format!("cannot buffer a response: {e}")).into_response()
            }
        };
        let stored = Stored {
            status: parts.status,
            headers: parts.headers.clone(),
            body: body.clone(),
        };
        *guard = Some((Instant::now(), stored));
        (parts.status, parts.headers, body).into_response()
    }
}
