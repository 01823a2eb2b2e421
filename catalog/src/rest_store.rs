//! An S3 store whose requests the REST catalog signs (`POST /v1/aws/s3/sign`, the remote
//! signing of the Iceberg REST spec): object_store builds each request unsigned, this
//! connector asks the server for the `Authorization` headers and sends it. The client holds
//! no S3 keys, and the server signs only what the caller's grants allow.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use object_store::aws::AmazonS3Builder;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpService,
    ReqwestConnector,
};
use object_store::multipart::MultipartStore;
use object_store::ClientOptions;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{json, Value};

use floe_table_format::Warehouse;

use crate::error::{Error, Result};
use crate::rest_api::RestApi;

/// The warehouse at `url` (`s3://bucket/prefix`) reached through the server's signer, with
/// the endpoint and region of the server's `/v1/config`.
pub fn signed_warehouse(
    url: &str,
    config: &HashMap<String, String>,
    api: Arc<RestApi>,
) -> Result<Warehouse> {
    let bucket = url
        .strip_prefix("s3://")
        .and_then(|rest| rest.split('/').next())
        .filter(|b| !b.is_empty())
        .ok_or_else(|| Error::Rest {
            catalog: api.uri().to_string(),
            status: 0,
            message: format!("floe.warehouse '{url}' names no bucket"),
        })?;
    let region = config
        .get("s3.region")
        .cloned()
        .unwrap_or_else(|| "us-east-1".to_string());
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(&region)
        .with_skip_signature(true)
        .with_http_connector(SigningConnector {
            api: Arc::clone(&api),
            region: region.clone(),
        });
    let mut client = ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(30));
    if let Some(endpoint) = config.get("s3.endpoint") {
        builder = builder
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(false);
        if endpoint.starts_with("http://") {
            client = client.with_allow_http(true);
        }
    }
    let store = builder
        .with_client_options(client)
        .build()
        .map_err(|e| Error::Rest {
            catalog: api.uri().to_string(),
            status: 0,
            message: format!("cannot open {url} through the signer: {e}"),
        })?;
    let store = Arc::new(store);
    let multipart: Arc<dyn MultipartStore> = store.clone();
    Ok(Warehouse::with_store(url, store)?.with_multipart(multipart))
}

/// Builds [`SigningService`]s around object_store's own HTTP client.
#[derive(Debug)]
struct SigningConnector {
    api: Arc<RestApi>,
    region: String,
}

impl HttpConnector for SigningConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(SigningService {
            inner: ReqwestConnector::default().connect(options)?,
            api: Arc::clone(&self.api),
            region: self.region.clone(),
        }))
    }
}

#[derive(Debug)]
struct SigningService {
    inner: HttpClient,
    api: Arc<RestApi>,
    region: String,
}

impl SigningService {
    /// The headers the server adds, or why not: a transport failure (retried by the
    /// store, like any request that was not sent) or a refusal (final).
    async fn signed_headers(
        &self,
        req: &HttpRequest,
    ) -> Result<Vec<(String, String)>, (HttpErrorKind, String)> {
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in req.headers() {
            if let Ok(v) = value.to_str() {
                headers
                    .entry(name.as_str().to_string())
                    .or_default()
                    .push(v.to_string());
            }
        }
        let body = json!({
            "region": self.region,
            "uri": req.uri().to_string(),
            "method": req.method().as_str(),
            "headers": headers,
        });
        let response = self
            .api
            .http()
            .post(format!("{}/v1/aws/s3/sign", self.api.uri()))
            .bearer_auth(self.api.token())
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                (
                    HttpErrorKind::Request,
                    format!("the signer did not answer: {e}"),
                )
            })?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err((
                HttpErrorKind::Unknown,
                format!(
                    "the catalog refused to sign {} {}: {}",
                    req.method(),
                    req.uri(),
                    answer["error"]["message"].as_str().unwrap_or("refused")
                ),
            ));
        }
        let mut out = Vec::new();
        for (name, values) in answer["headers"].as_object().into_iter().flatten() {
            for v in values.as_array().into_iter().flatten() {
                if let Some(v) = v.as_str() {
                    out.push((name.clone(), v.to_string()));
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl HttpService for SigningService {
    async fn call(&self, mut req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let signed = self
            .signed_headers(&req)
            .await
            .map_err(|(kind, message)| HttpError::new(kind, SignError(message)))?;
        for (name, value) in signed {
            let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) else {
                continue;
            };
            req.headers_mut().insert(n, v);
        }
        self.inner.execute(req).await
    }
}

/// Why a request could not be signed.
#[derive(Debug)]
struct SignError(String);

impl std::fmt::Display for SignError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SignError {}
