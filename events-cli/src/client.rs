//! The admin API, in this process (the router over a bus on the store) or over HTTP.

use std::io::Read;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use events_http::axum;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::{Exit, Failure};

/// Where the admin API is.
pub(crate) enum Admin {
    /// A router over a bus this process built, and the token it was given.
    Local {
        router: axum::Router,
        token: String,
        runtime: tokio::runtime::Runtime,
    },
    /// A running service.
    Remote {
        base: String,
        token: Option<String>,
        agent: ureq::Agent,
    },
}

/// An answer: its status and its JSON body.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
}

/// The largest answer read (the biggest page of events is about 4 MiB of payloads).
const MAX_ANSWER: u64 = 64 << 20;

impl Admin {
    /// A running service at `base` (`http://host:port`).
    pub(crate) fn remote(base: &str, token: Option<String>, timeout: Duration) -> Admin {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(timeout))
            .timeout_recv_response(Some(timeout))
            .build()
            .into();
        Admin::Remote {
            base: base.trim_end_matches('/').to_owned(),
            token,
            agent,
        }
    }

    /// Whether this is a running service (not a bus of this process).
    pub(crate) fn is_remote(&self) -> bool {
        matches!(self, Admin::Remote { .. })
    }

    /// `method path` with an optional JSON body; the answer, whatever its status.
    pub(crate) fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, Failure> {
        match self {
            Admin::Local {
                router,
                token,
                runtime,
            } => runtime.block_on(async {
                let response = local_send(router, local_request(method, path, token, body)).await?;
                let status = response.status();
                Ok(Reply {
                    status,
                    body: read_local(response.into_body()).await?,
                })
            }),
            Admin::Remote { .. } => {
                let mut response = self.remote_call(method, path, body)?;
                let status = response.status();
                let text = response
                    .body_mut()
                    .with_config()
                    .limit(MAX_ANSWER)
                    .read_to_string()
                    .map_err(|e| unreachable_service(self, &e))?;
                Ok(Reply {
                    status,
                    body: serde_json::from_str(&text).unwrap_or(Value::Null),
                })
            }
        }
    }

    fn remote_call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<axum::http::Response<ureq::Body>, Failure> {
        let Admin::Remote { base, token, agent } = self else {
            unreachable!("remote_call on a local admin API");
        };
        let url = format!("{base}{path}");
        let auth = token.as_ref().map(|t| format!("Bearer {t}"));
        let changes = method != Method::GET;
        let result = match (method, body) {
            (Method::GET, _) => with_auth(agent.get(&url), auth.as_deref()).call(),
            (Method::DELETE, _) => with_auth(agent.delete(&url), auth.as_deref()).call(),
            (_, Some(body)) => with_auth(agent.post(&url), auth.as_deref()).send_json(body),
            (_, None) => with_auth(agent.post(&url), auth.as_deref()).send_empty(),
        };
        result.map_err(|e| {
            if changes && !surely_unsent(&e) {
                // The request may have reached the service: not a failure, an unknown.
                Failure::new(
                    Exit::Unknown,
                    format!(
                        "no answer from the admin API ({e}): the request may have been carried out; look (`show`, `lag`) before repeating it"
                    ),
                )
            } else {
                unreachable_service(self, &e)
            }
        })
    }

    /// `POST path`, answered with Server-Sent Events: each `(event, data)` to `each` as it
    /// arrives. A refusal before the stream (not 200) is returned as the reply.
    pub(crate) fn stream(
        &self,
        path: &str,
        mut each: impl FnMut(&str, &str) -> Result<(), Failure>,
    ) -> Result<Option<Reply>, Failure> {
        let mut parser = Sse::default();
        match self {
            Admin::Local {
                router,
                token,
                runtime,
            } => runtime.block_on(async {
                let request = local_request(Method::POST, path, token, None);
                let response = local_send(router, request).await?;
                let status = response.status();
                let mut body = response.into_body();
                if status != StatusCode::OK {
                    let body = read_local(body).await?;
                    return Ok(Some(Reply { status, body }));
                }
                while let Some(frame) = body.frame().await {
                    let frame =
                        frame.map_err(|e| Failure::new(Exit::Unavailable, e.to_string()))?;
                    if let Some(data) = frame.data_ref() {
                        parser.feed(data, &mut each)?;
                    }
                }
                Ok(None)
            }),
            Admin::Remote { .. } => {
                let mut response = self.remote_call(Method::POST, path, None)?;
                let status = response.status();
                if status != StatusCode::OK {
                    let text = response
                        .body_mut()
                        .with_config()
                        .limit(MAX_ANSWER)
                        .read_to_string()
                        .unwrap_or_default();
                    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
                    return Ok(Some(Reply { status, body }));
                }
                let mut reader = response.body_mut().as_reader();
                let mut buf = [0u8; 8192];
                loop {
                    let n = reader.read(&mut buf).map_err(|e| {
                        Failure::new(
                            Exit::Unknown,
                            format!("the progress stream broke ({e}): the rebuild may go on in the service"),
                        )
                    })?;
                    if n == 0 {
                        return Ok(None);
                    }
                    parser.feed(&buf[..n], &mut each)?;
                }
            }
        }
    }
}

/// Whether the request certainly never reached the service (no connection was made).
fn surely_unsent(e: &ureq::Error) -> bool {
    use ureq::Timeout;
    match e {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        ureq::Error::Timeout(t) => matches!(t, Timeout::Resolve | Timeout::Connect),
        ureq::Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::AddrNotAvailable
        ),
        _ => false,
    }
}

fn with_auth<B>(request: ureq::RequestBuilder<B>, auth: Option<&str>) -> ureq::RequestBuilder<B> {
    match auth {
        Some(auth) => request.header("Authorization", auth),
        None => request,
    }
}

/// The router's answer to `request`, in this process.
async fn local_send(
    router: &axum::Router,
    request: Request<Body>,
) -> Result<axum::http::Response<Body>, Failure> {
    router
        .clone()
        .oneshot(request)
        .await
        .map_err(|e| Failure::new(Exit::Unavailable, format!("{e}")))
}

/// A local answer's body as JSON (`null` when it is not JSON).
async fn read_local(body: Body) -> Result<Value, Failure> {
    let bytes = body
        .collect()
        .await
        .map_err(|e| Failure::new(Exit::Unavailable, format!("{e}")))?
        .to_bytes();
    Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn local_request(method: Method, path: &str, token: &str, body: Option<&Value>) -> Request<Body> {
    let builder = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"));
    let request = match body {
        Some(body) => builder
            .header("content-type", "application/json")
            .body(Body::from(body.to_string())),
        None => builder.body(Body::empty()),
    };
    request.unwrap_or_else(|_| Request::new(Body::empty()))
}

fn unreachable_service(admin: &Admin, e: &dyn std::fmt::Display) -> Failure {
    let base = match admin {
        Admin::Remote { base, .. } => base.as_str(),
        Admin::Local { .. } => "this process",
    };
    Failure::new(
        Exit::Unavailable,
        format!("the admin API at {base} could not be reached: {e}"),
    )
}

/// A Server-Sent Events reader: lines in, `(event, data)` out at each blank line. A line
/// longer than 1 MiB ends the stream with an error (the service sends short ones).
#[derive(Default)]
struct Sse {
    line: Vec<u8>,
    event: String,
    data: String,
}

impl Sse {
    fn feed(
        &mut self,
        bytes: &[u8],
        each: &mut impl FnMut(&str, &str) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        for &b in bytes {
            if b != b'\n' {
                self.line.push(b);
                if self.line.len() > 1 << 20 {
                    return Err(Failure::new(
                        Exit::Unavailable,
                        "the event stream sent a line longer than 1 MiB",
                    ));
                }
                continue;
            }
            let line = String::from_utf8_lossy(&self.line);
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if line.is_empty() {
                if !self.data.is_empty() || !self.event.is_empty() {
                    each(&self.event, &self.data)?;
                }
                self.event.clear();
                self.data.clear();
            } else if let Some(v) = line.strip_prefix("event:") {
                self.event = v.trim_start().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
            self.line.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Sse;

    #[test]
    fn sse_events_split_at_blank_lines_across_chunks() {
        let mut seen = Vec::new();
        let mut sse = Sse::default();
        let text = b"event: progress\ndata: {\"done\":1}\n\n: keep-alive\n\nevent: done\r\ndata: a\ndata: b\n\n";
        for chunk in text.chunks(5) {
            sse.feed(chunk, &mut |e, d| {
                seen.push((e.to_owned(), d.to_owned()));
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(
            seen,
            [
                ("progress".to_owned(), "{\"done\":1}".to_owned()),
                ("done".to_owned(), "a\nb".to_owned())
            ]
        );
    }
}
