//! What the AWS JSON 1.1 surfaces other than ECR's (Secrets Manager, KMS) share: `POST /` with
//! `X-Amz-Target: <prefix>.<Operation>`, a JSON object in, a JSON object or
//! `{"__type", "message"}` out, SigV4 for the service.

use std::collections::BTreeMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_registry::identity::Caller;
use serde_json::{Value, json};

use super::{AppState, now_seconds};

/// A refusal: the `__type`, its message and the HTTP status.
pub struct Failure {
    pub code: String,
    pub message: String,
    pub status: StatusCode,
}

/// A client error (400).
pub fn failure(code: &str, message: impl Into<String>) -> Failure {
    Failure { code: code.to_string(), message: message.into(), status: StatusCode::BAD_REQUEST }
}

/// A server error (500), logged.
pub fn internal(code: &str, message: impl Into<String>) -> Failure {
    let message = message.into();
    tracing::error!(code, error = %message, "internal error");
    Failure { code: code.to_string(), message, status: StatusCode::INTERNAL_SERVER_ERROR }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        // The SDKs read `message` (KMS) or `Message` (Secrets Manager); send both.
        json_response(self.status, json!({"__type": self.code, "message": self.message, "Message": self.message}))
    }
}

pub fn json_response(status: StatusCode, body: Value) -> Response {
    let mut r = (status, [(header::CONTENT_TYPE, "application/x-amz-json-1.1")], body.to_string()).into_response();
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        r.headers_mut().insert("x-amzn-requestid", id);
    }
    r
}

/// Whether a request's `X-Amz-Target` is under `prefix` (the service it is for).
pub fn targets(headers: &axum::http::HeaderMap, prefix: &str) -> bool {
    headers.get("x-amz-target").and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with(prefix))
}

/// An operation's answer: its JSON, or its refusal.
pub fn respond(answer: Result<Value, Failure>) -> Response {
    match answer {
        Ok(v) => json_response(StatusCode::OK, v),
        Err(f) => f.into_response(),
    }
}

/// The operation a target names, if it is one of `operations` under `prefix`.
pub fn operation<'a>(target: &'a str, prefix: &str, operations: &[&str]) -> Result<&'a str, Failure> {
    match target.strip_prefix(prefix) {
        Some(op) if operations.contains(&op) => Ok(op),
        _ => Err(failure("UnknownOperationException", format!("Unknown operation {target:?}"))),
    }
}

/// The signed caller, for `service`.
pub async fn caller(app: &AppState, req: &berth_auth::sigv4::Request<'_>, service: &str) -> Result<Caller, Failure> {
    app.identity.authenticate_sigv4(req, service, now_seconds()).await.map_err(|e| failure(e.exception(), e.message()))
}

/// A request's JSON object, read with the service's wording for bad and missing parameters.
pub struct Input {
    value: Value,
    /// The `__type` of a parameter of the wrong type, or missing.
    invalid: &'static str,
    missing: fn(&str) -> String,
}

impl Input {
    pub fn parse(body: &[u8], invalid: &'static str, missing: fn(&str) -> String) -> Result<Input, Failure> {
        let value: Value = if body.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(body).map_err(|e| failure("SerializationException", format!("invalid JSON: {e}")))?
        };
        if !value.is_object() {
            return Err(failure("SerializationException", "the request body must be a JSON object"));
        }
        Ok(Input { value, invalid, missing })
    }

    fn wrong(&self, key: &str, what: &str) -> Failure {
        failure(self.invalid, format!("{key} must be {what}."))
    }

    /// A member that is present and not null.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.value.get(key).filter(|v| !v.is_null())
    }

    pub fn text(&self, key: &str) -> Result<Option<&str>, Failure> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.wrong(key, "a string")),
        }
    }

    pub fn required(&self, key: &str) -> Result<&str, Failure> {
        self.text(key)?.ok_or_else(|| failure(self.invalid, (self.missing)(key)))
    }

    pub fn flag(&self, key: &str) -> Result<bool, Failure> {
        match self.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(self.wrong(key, "a boolean")),
        }
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, Failure> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| self.wrong(key, "a number")),
        }
    }

    pub fn strings(&self, key: &str) -> Result<Option<Vec<String>>, Failure> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(list)) => list
                .iter()
                .map(|s| s.as_str().map(str::to_string).ok_or_else(|| self.wrong(key, "a list of strings")))
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(self.wrong(key, "a list of strings")),
        }
    }

    /// A map of strings to strings (an encryption context).
    pub fn string_map(&self, key: &str) -> Result<Option<BTreeMap<String, String>>, Failure> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => serde_json::from_value(v.clone()).map(Some).map_err(|_| self.wrong(key, "a map of strings")),
        }
    }

    /// A list of `{Key|TagKey, Value|TagValue}` tags.
    pub fn tags(&self, key: &str, key_name: &str, value_name: &str) -> Result<Vec<(String, String)>, Failure> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(list)) => list
                .iter()
                .map(|t| match (t.get(key_name).and_then(Value::as_str), t.get(value_name).and_then(Value::as_str)) {
                    (Some(k), Some(v)) => Ok((k.to_string(), v.to_string())),
                    _ => Err(failure(self.invalid, format!("Each tag needs a {key_name} and a {value_name}."))),
                })
                .collect(),
            Some(_) => Err(self.wrong(key, "a list")),
        }
    }
}

/// A timestamp as JSON 1.1 sends them: epoch seconds.
pub fn seconds(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}
