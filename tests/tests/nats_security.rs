//! Authentic events across processes over a real `nats-server`: a publisher signs with its
//! Ed25519 key, a consumer verifies against its keyring; a valid event reaches the handler
//! with the key's principal (which the access rules then check), and a tampered payload, a
//! tampered header, a wrong key or no signature is refused into the dead-letter stream with
//! the reason. And nats-server permissions generated from the catalog: a service with them
//! publishes and consumes its events, and the broker refuses it the others.

#![allow(unreachable_pub)]

use std::sync::Mutex;
use std::time::Duration;

use events::nats::{Nats, NatsOptions};
use events::security::{AccessRules, Keyring, Principal, SigningKey};
use events::{Bus, Event};
use events_tests::{NatsServer as Server, until};
use futures_util::StreamExt;

#[derive(Event, Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "sec.order")]
pub struct Order {
    pub order_id: u64,
}

#[derive(Event, Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "sec.audit")]
pub struct Audit {
    pub order_id: u64,
}

static ORDERS: Mutex<Vec<(u64, Option<String>)>> = Mutex::new(Vec::new());
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

mod handlers {
    use super::*;

    #[events::handler]
    fn take_order(ev: &Order, ctx: &events::Context) {
        ORDERS
            .lock()
            .unwrap()
            .push((ev.order_id, ctx.meta().principal().map(str::to_owned)));
    }
}

fn header(m: &async_nats::Message, name: &str) -> Option<String> {
    m.headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.to_string())
}

/// A publisher signing with `key`, and a consumer of the handlers verifying with `keyring`
/// whose rules let only `checkout` send `sec.order`, both on `prefix`.
async fn signed_pair(
    server: &Server,
    prefix: &str,
    key: SigningKey,
    keyring: Keyring,
) -> (Bus, Bus) {
    let url = server.url();
    let nats = |options: NatsOptions| {
        let url = url.clone();
        async move { Nats::connect(&url, options.memory_storage()).await.unwrap() }
    };
    let publisher = Bus::builder()
        .no_handlers()
        .transport(nats(NatsOptions::new(prefix).sign_with(key)).await)
        .build()
        .unwrap();
    let consumer = Bus::builder()
        .scope("nats_security::handlers")
        .access(AccessRules::new().allow("checkout", "sec.order"))
        .transport(nats(NatsOptions::new(prefix).verify_with(keyring)).await)
        .build()
        .unwrap();
    (publisher, consumer)
}

async fn next_dead(dlq: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(Duration::from_secs(10), dlq.next())
        .await
        .expect("a dead letter within 10 s")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_events_are_verified_and_tampered_or_unsigned_ones_dead_lettered() {
    let _g = SERIAL.lock().await;
    ORDERS.lock().unwrap().clear();
    let server = Server::start();
    let checkout = SigningKey::generate("checkout-2026").unwrap();
    let intruder = SigningKey::generate("checkout-2026").unwrap(); // same id, other secret
    let checkout_copy = checkout.clone();
    let keyring = Keyring::new()
        .trust(
            "checkout-2026",
            checkout.public_key(),
            Principal::new("checkout").unwrap(),
        )
        .unwrap();
    assert!(!format!("{checkout:?}").contains(&format!("{:?}", checkout.to_bytes())));

    let (publisher, consumer) = signed_pair(&server, "s1", checkout, keyring).await;
    let client = async_nats::connect(server.url()).await.unwrap();
    let mut raw = client.subscribe("s1.sec.order").await.unwrap();
    let mut dlq = client.subscribe("s1-dlq.>").await.unwrap();
    client.flush().await.unwrap();

    publisher.publish(Order { order_id: 1 }).await.unwrap();
    let signed = raw.next().await.unwrap();
    let signature = header(&signed, "Events-Signature").unwrap();
    assert!(
        signature.starts_with("v1 key=checkout-2026 sig="),
        "{signature}"
    );

    // Forgeries made from the signed message. Each gets its own `Nats-Msg-Id` (JetStream
    // would drop a second message with the first's id), signed again as the publisher
    // would have signed it, and is then changed.
    let original: serde_json::Value = serde_json::from_slice(&signed.payload).unwrap();
    let original_id = original["id"].as_str().unwrap().to_owned();
    let body_of = |n: u8| {
        String::from_utf8(signed.payload.to_vec())
            .unwrap()
            .replace(
                &original_id,
                &format!("0190a7c2-0000-7000-8000-0000000000{n:02x}"),
            )
            .into_bytes()
    };
    let like_signed = |n: u8, key: &SigningKey| {
        let body = body_of(n);
        let mut headers = async_nats::HeaderMap::new();
        for (name, values) in signed.headers.as_ref().unwrap().iter() {
            let n: &str = name.as_ref();
            if n != "Events-Signature" && !n.eq_ignore_ascii_case("Nats-Msg-Id") {
                headers.insert(name.clone(), values[0].clone());
            }
        }
        let id = format!("0190a7c2-0000-7000-8000-0000000000{n:02x}");
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
        let pairs: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v[0].to_string()))
            .collect();
        let signature =
            key.sign_message(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())), &body);
        (headers, signature)
    };
    let sign = |(mut headers, signature): (async_nats::HeaderMap, String)| {
        headers.insert("Events-Signature", signature.as_str());
        headers
    };
    let tampered_body = String::from_utf8(body_of(1))
        .unwrap()
        .replace("\"order_id\":1", "\"order_id\":666")
        .into_bytes();
    assert_ne!(body_of(1), tampered_body);
    let mut tampered_header = sign(like_signed(2, &checkout_copy));
    tampered_header.insert("ce-source", "%2Fsomeone-else");
    let forgeries = [
        (
            sign(like_signed(1, &checkout_copy)),
            tampered_body,
            "does not match",
        ),
        (tampered_header, body_of(2), "does not match"),
        (
            sign(like_signed(3, &intruder)),
            body_of(3),
            "does not match",
        ),
        (like_signed(4, &checkout_copy).0, body_of(4), "not signed"),
    ];
    // The untampered re-signed message is accepted: the refusals are the tampering's.
    client
        .publish_with_headers(
            "s1.sec.order",
            sign(like_signed(5, &checkout_copy)),
            body_of(5).into(),
        )
        .await
        .unwrap();
    for (headers, payload, _) in &forgeries {
        client
            .publish_with_headers("s1.sec.order", headers.clone(), payload.clone().into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();

    let _consumers = consumer.consume().await.unwrap();
    let mut errors = Vec::new();
    for _ in &forgeries {
        let dead = next_dead(&mut dlq).await;
        errors.push(header(&dead, "Events-Error").unwrap_or_default());
    }
    let count = |reason: &str| errors.iter().filter(|e| e.contains(reason)).count();
    assert_eq!(
        (count("does not match"), count("not signed")),
        (3, 1),
        "{errors:?}"
    );
    until("the signed orders", || ORDERS.lock().unwrap().len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        *ORDERS.lock().unwrap(),
        [
            (1, Some("checkout".to_owned())),
            (1, Some("checkout".to_owned()))
        ],
        "only the signed event reached the handler, with the key's principal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_principal_is_still_checked_against_the_access_rules() {
    let _g = SERIAL.lock().await;
    ORDERS.lock().unwrap().clear();
    let server = Server::start();
    let key = SigningKey::generate("web-1").unwrap();
    let keyring = Keyring::new()
        .trust("web-1", key.public_key(), Principal::new("web").unwrap())
        .unwrap();
    let (publisher, consumer) = signed_pair(&server, "s2", key, keyring).await;
    let client = async_nats::connect(server.url()).await.unwrap();
    let mut dlq = client.subscribe("s2-dlq.>").await.unwrap();
    client.flush().await.unwrap();
    publisher.publish(Order { order_id: 2 }).await.unwrap();
    let _consumers = consumer.consume().await.unwrap();
    let dead = next_dead(&mut dlq).await;
    let error = header(&dead, "Events-Error").unwrap_or_default();
    assert!(
        error.contains("principal `web` may not publish `sec.order`"),
        "{error}"
    );
    assert!(ORDERS.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_server_permissions_let_a_service_do_its_work_and_nothing_else() {
    let _g = SERIAL.lock().await;
    ORDERS.lock().unwrap().clear();
    let options = || {
        NatsOptions::new("s3")
            .memory_storage()
            .local::<Audit>()
            .user_and_password("checkout", "pw")
    };
    let catalog = Bus::builder()
        .scope("nats_security::handlers")
        .build()
        .unwrap();
    let permissions = events::nats::Permissions::for_bus(&catalog, &options());
    assert!(permissions.publish.contains(&"s3.sec.order".to_owned()));
    assert!(!permissions.publish.iter().any(|s| s.contains("sec.audit")));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.conf");
    std::fs::write(
        &config,
        format!(
            "authorization {{ users = [ {}, {{ user: \"admin\", password: \"admin\" }} ] }}\n",
            permissions.user("checkout", "pw")
        ),
    )
    .unwrap();
    let log = dir.path().join("server.log");
    let server = Server::start_with(&["-c", config.to_str().unwrap(), "-l", log.to_str().unwrap()]);

    // The service, as `checkout`, creates its streams, publishes, consumes and acks.
    let bus = Bus::builder()
        .scope("nats_security::handlers")
        .transport(Nats::connect(&server.url(), options()).await.unwrap())
        .build()
        .unwrap();
    let _consumers = bus.consume().await.unwrap();
    bus.publish(Order { order_id: 3 }).await.unwrap();
    until("the order", || !ORDERS.lock().unwrap().is_empty()).await;
    assert_eq!(ORDERS.lock().unwrap()[0].0, 3);

    // As `checkout`, the broker refuses a subject outside its permissions.
    let as_checkout =
        async_nats::ConnectOptions::with_user_and_password("checkout".into(), "pw".into())
            .connect(server.url())
            .await
            .unwrap();
    let js = async_nats::jetstream::new(as_checkout);
    let refused = match js.publish("s3.sec.audit", "{}".into()).await {
        Ok(ack) => ack.await.err().map(|e| e.to_string()),
        Err(e) => Some(e.to_string()),
    };
    assert!(
        refused.is_some(),
        "the broker took a publish outside the permissions"
    );
    // The same publish as `admin` is taken: the refusal is the permissions'.
    let admin = async_nats::ConnectOptions::with_user_and_password("admin".into(), "admin".into())
        .connect(server.url())
        .await
        .unwrap();
    async_nats::jetstream::new(admin)
        .publish("s3.sec.audit", "{}".into())
        .await
        .unwrap()
        .await
        .unwrap();
    // The server logged one violation: the refused publish; the service's own work needed
    // nothing outside its permissions.
    let log = std::fs::read_to_string(&log).unwrap();
    let violations: Vec<&str> = log.lines().filter(|l| l.contains("Violation")).collect();
    assert_eq!(violations.len(), 1, "{violations:#?}");
    assert!(violations[0].contains("s3.sec.audit"), "{violations:#?}");
}
