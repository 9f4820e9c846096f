//! Connecting to NATS securely, and saying what happened: user and password (given or in the
//! URL), a token, an nkey, TLS with a private certificate authority and client certificates,
//! each against a real `nats-server` started with that auth; right credentials work, wrong
//! ones fail promptly as [`NatsError::Auth`] without echoing the secret; an unreachable
//! server fails promptly as [`NatsError::Connect`]. And a publish whose ack never comes (the
//! server stopped with `SIGSTOP`) is [`PublishError::Unconfirmed`], not "not sent", and
//! publishing it again with its id stores it once.

#![allow(unreachable_pub)]

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use events::nats::{Nats, NatsError, NatsOptions};
use events::{Bus, Event, PublishError, PublishOptions};
use events_tests::{NatsServer, free_port, until};

#[derive(Event, Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "secure.ping")]
pub struct Ping {
    pub n: u64,
}

static PINGS: AtomicU64 = AtomicU64::new(0);

#[events::handler]
fn count(_ev: &Ping) {
    PINGS.fetch_add(1, Ordering::SeqCst);
}

/// Prompt: well under the 10 s that the old connect took to fail.
const PROMPT: Duration = Duration::from_secs(3);

fn options() -> NatsOptions {
    NatsOptions::new("secure").memory_storage()
}

/// Connects with `options`, timing it.
async fn connect(url: &str, options: NatsOptions) -> (Result<Nats, NatsError>, Duration) {
    let started = Instant::now();
    let result = Nats::connect(url, options).await;
    (result, started.elapsed())
}

/// A connection that works: it set up the stream, and an event goes round.
async fn works(url: &str, options: NatsOptions) {
    let (nats, took) = connect(url, options).await;
    let nats = nats.unwrap_or_else(|e| panic!("right credentials refused: {e}"));
    assert!(took < PROMPT, "{took:?}");
    sends_one(nats).await;
}

/// A bus on `nats` publishes an event (JetStream stores it).
async fn sends_one(nats: Nats) {
    let bus = Bus::builder()
        .scope(module_path!())
        .transport(nats)
        .build()
        .unwrap();
    bus.publish(Ping { n: 1 }).await.unwrap();
}

/// A connection refused for its credentials, promptly, without showing `secret`.
async fn refused(url: &str, options: NatsOptions, secret: &str) {
    let (result, took) = connect(url, options).await;
    let error = result.expect_err("wrong credentials were accepted");
    assert!(matches!(error, NatsError::Auth { .. }), "{error:?}");
    assert!(took < PROMPT, "took {took:?}: {error}");
    let shown = format!("{error} {error:?}");
    assert!(
        !shown.contains(secret),
        "the error shows the secret: {shown}"
    );
}

#[tokio::test]
async fn user_and_password_given_or_in_the_url() {
    let server = NatsServer::start_with(&["--user", "alice", "--pass", "s3cret-pw"]);
    let url = server.url();
    works(&url, options().user_and_password("alice", "s3cret-pw")).await;
    works(&format!("nats://alice:s3cret-pw@{url}"), options()).await;
    refused(
        &url,
        options().user_and_password("alice", "wrong-pw"),
        "wrong-pw",
    )
    .await;
    refused(
        &format!("nats://alice:wrong-pw@{url}"),
        options(),
        "wrong-pw",
    )
    .await;
    refused(&url, options(), "s3cret-pw").await;
    // A debug dump of the options names the kind of credentials, never the password.
    let dump = format!("{:?}", options().user_and_password("alice", "s3cret-pw"));
    assert!(
        dump.contains("alice") && !dump.contains("s3cret-pw"),
        "{dump}"
    );
}

#[tokio::test]
async fn token() {
    let server = NatsServer::start_with(&["--auth", "t0ken-42"]);
    works(&server.url(), options().token("t0ken-42")).await;
    refused(&server.url(), options().token("t0ken-41"), "t0ken-41").await;
}

/// For what `NatsOptions` does not offer: a client connected by the caller.
#[tokio::test]
async fn a_client_connected_by_the_caller() {
    let server = NatsServer::start_with(&["--auth", "t0ken-43"]);
    let client = async_nats::ConnectOptions::with_token("t0ken-43".into())
        .connect(server.url())
        .await
        .unwrap();
    sends_one(Nats::from_client(client, options()).await.unwrap()).await;
}

#[tokio::test]
async fn nkey() {
    let user = nkeys::KeyPair::new_user();
    let stranger = nkeys::KeyPair::new_user();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nkey.conf");
    std::fs::write(
        &config,
        format!(
            "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\n",
            user.public_key()
        ),
    )
    .unwrap();
    let server = NatsServer::start_with(&["-c", config.to_str().unwrap()]);
    works(&server.url(), options().nkey(user.seed().unwrap())).await;
    let wrong = stranger.seed().unwrap();
    refused(&server.url(), options().nkey(wrong.clone()), &wrong).await;
    refused(
        &server.url(),
        options().nkey("SUnot-a-seed"),
        "SUnot-a-seed",
    )
    .await;
}

/// A private certificate authority, a server certificate for 127.0.0.1 and a client
/// certificate, as PEM files in `dir`.
fn certificates(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    for (name, sans) in [("server", vec!["localhost".to_owned()]), ("client", vec![])] {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(sans).unwrap();
        if name == "server" {
            params
                .subject_alt_names
                .push(SanType::IpAddress([127, 0, 0, 1].into()));
        }
        let cert = params.signed_by(&key, &ca).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
    }
}

#[tokio::test]
async fn tls_with_a_private_authority_and_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let server = NatsServer::start_with(&[
        "--tlsverify",
        "--tlscert",
        &file("server.pem"),
        "--tlskey",
        &file("server-key.pem"),
        "--tlscacert",
        &file("ca.pem"),
    ]);
    let url = server.url();
    let trusted = || {
        options()
            .root_certificates(file("ca.pem"))
            .client_certificate(file("client.pem"), file("client-key.pem"))
    };
    works(&url, trusted()).await;
    works(&format!("tls://{url}"), trusted()).await;

    // The server's certificate is signed by an authority the client does not trust.
    let untrusted = options().client_certificate(file("client.pem"), file("client-key.pem"));
    let error = fails_promptly(&url, untrusted, "an untrusted server certificate").await;
    assert!(matches!(error, NatsError::Tls { .. }), "{error:?}");

    // No client certificate for a server that verifies clients; a root certificate file
    // that does not exist.
    for (file, what) in [
        ("ca.pem", "a client without a certificate"),
        ("missing.pem", "a missing root certificate file"),
    ] {
        let error = fails_promptly(
            &url,
            options().root_certificates(file_path(&dir, file)),
            what,
        )
        .await;
        assert!(
            matches!(error, NatsError::Tls { .. } | NatsError::Connect { .. }),
            "{what}: {error:?}"
        );
    }
}

fn file_path(dir: &tempfile::TempDir, name: &str) -> String {
    dir.path().join(name).to_str().unwrap().to_owned()
}

/// A connection refused within [`PROMPT`]: its error.
async fn fails_promptly(url: &str, options: NatsOptions, what: &str) -> NatsError {
    let (result, took) = connect(url, options).await;
    let error = result.expect_err(&format!("{what} was accepted"));
    assert!(took < PROMPT, "{what}: took {took:?}");
    error
}

#[tokio::test]
async fn an_unreachable_server_fails_promptly_as_a_connection_error() {
    let url = format!("127.0.0.1:{}", free_port());
    let (result, took) = connect(&url, options()).await;
    let error = result.expect_err("connected to nothing");
    assert!(matches!(error, NatsError::Connect { .. }), "{error:?}");
    assert!(took < PROMPT, "{took:?}");
    // The address is shown without the credentials in it.
    let (result, _) = connect(&format!("nats://bob:hunter2@{url}"), options()).await;
    let shown = result.err().unwrap().to_string();
    assert!(
        shown.contains(&url) && !shown.contains("hunter2"),
        "{shown}"
    );
}

/// Issue 16: a publish whose ack does not come is not "not sent": the server may store it
/// (here it does, once it runs again), and publishing it again with its id is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_publish_is_unconfirmed_and_its_retry_with_the_same_id_is_stored_once() {
    let server = NatsServer::start();
    let nats = Nats::connect(
        &server.url(),
        options().publish_timeout(Duration::from_millis(500)),
    )
    .await
    .unwrap();
    // With a store too: it has the event when the ack does not come, and lets the retry
    // with its id through (JetStream stores it once).
    let bus = Bus::builder()
        .scope(module_path!())
        .store(events::store::MemoryStore::new())
        .transport(nats)
        .build()
        .unwrap();
    bus.publish(Ping { n: 1 }).await.unwrap();

    let signal = |sig: &str| {
        let status = std::process::Command::new("kill")
            .args([sig, &server.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("-STOP");
    let started = Instant::now();
    let result = bus.publish(Ping { n: 2 }).await;
    signal("-CONT");
    let error = result.expect_err("published to a stopped server");
    let PublishError::Unconfirmed { id, .. } = &error else {
        panic!("expected Unconfirmed, got {error:?}: {error}");
    };
    assert!(started.elapsed() < PROMPT);
    assert!(
        error.to_string().contains("may have been stored"),
        "{error}"
    );

    // The documented retry: the same event, the same id.
    bus.publish_with(Ping { n: 2 }, PublishOptions::new().id(*id))
        .await
        .unwrap();
    bus.publish(Ping { n: 3 }).await.unwrap();

    // Each event is in the stream once: 1, 2 (sent twice, stored once), 3.
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("SECURE").await.unwrap();
    let messages = stream.info().await.unwrap().state.messages;
    assert_eq!(messages, 3);

    // And consumers see each once.
    PINGS.store(0, Ordering::SeqCst);
    let consumers = bus.consume().await.unwrap();
    until("three pings", || PINGS.load(Ordering::SeqCst) >= 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(PINGS.load(Ordering::SeqCst), 3);
    drop(consumers);
}
