//! What the HTTP tests share: a server on a free port and a client that reports every
//! status.

use std::time::Duration;

use events::Bus;
use events_http::{HttpOptions, router};

/// Serves `bus` on a free port; its base URL.
pub async fn serve(bus: Bus, options: HttpOptions) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router(bus, options)).await.unwrap();
    });
    format!("http://{addr}")
}

/// A client that returns 4xx and 5xx answers instead of failing on them.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}
