//! The HTTP side of Floe's REST client: a token for one principal, and requests to the
//! catalog's endpoints (used by [`crate::rest`] for the catalog and by
//! [`crate::rest_store`] for the S3 signer).

use std::collections::HashMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::error::{Error, Result};

/// How long one request to the server may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection to a REST catalog as one principal.
#[derive(Debug)]
pub struct RestApi {
    http: reqwest::Client,
    uri: String,
    token: String,
}

/// An answer of the server: its status and JSON body (`Null` when it had none).
pub(crate) type Answer = (StatusCode, Value);

impl RestApi {
    /// Get a token for `credential` (`NAME:SECRET`) at `uri`.
    pub async fn connect(uri: &str, credential: &str) -> Result<RestApi> {
        let uri = uri.trim_end_matches('/').to_string();
        let (id, secret) = credential.split_once(':').ok_or_else(|| Error::Rest {
            catalog: uri.clone(),
            status: 0,
            message: "--credential must be NAME:SECRET (as `floe principal add` printed it)".into(),
        })?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| Error::Rest {
                catalog: uri.clone(),
                status: 0,
                message: format!("cannot build an HTTP client: {e}"),
            })?;
        let response = http
            .post(format!("{uri}/v1/oauth/tokens"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", secret),
            ])
            .send()
            .await
            .map_err(|e| Error::Rest {
                catalog: uri.clone(),
                status: 0,
                message: format!("cannot reach the catalog: {e}"),
            })?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let Some(token) = body["access_token"].as_str() else {
            return Err(Error::Rest {
                catalog: uri,
                status: status.as_u16(),
                message: format!(
                    "no token for {id}: {}",
                    body["error_description"].as_str().unwrap_or("refused")
                ),
            });
        };
        Ok(RestApi {
            token: token.to_string(),
            http,
            uri,
        })
    }

    /// The catalog's address.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The bearer token (for the S3 signer's requests).
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// One request; a transport failure is an error, any HTTP answer is returned.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.uri))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            request = request.json(b);
        }
        let response = request.send().await.map_err(|e| Error::Rest {
            catalog: self.uri.clone(),
            status: 0,
            message: format!("{path}: no answer: {e}"),
        })?;
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// A request that must succeed: any error status becomes [`Error::Rest`] with the
    /// server's message (404s as the catalog's not-found errors).
    pub(crate) async fn ok(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let (status, answer) = self.call(method, path, body).await?;
        if status.is_success() {
            return Ok(answer);
        }
        Err(self.error(status, &answer))
    }

    pub(crate) fn error(&self, status: StatusCode, answer: &Value) -> Error {
        let message = answer["error"]["message"]
            .as_str()
            .unwrap_or("no message")
            .to_string();
        Error::Rest {
            catalog: self.uri.clone(),
            status: status.as_u16(),
            message,
        }
    }

    /// `GET /v1/config`: the server's defaults and overrides, merged.
    pub async fn config(&self) -> Result<HashMap<String, String>> {
        let v = self.ok(Method::GET, "/v1/config", None).await?;
        let mut out = HashMap::new();
        for part in ["defaults", "overrides"] {
            if let Some(map) = v[part].as_object() {
                for (k, v) in map {
                    if let Some(s) = v.as_str() {
                        out.insert(k.clone(), s.to_string());
                    }
                }
            }
        }
        Ok(out)
    }
}
