//! The transport conformance suite ([`events::testing::transport`]) on every transport that
//! ships: the in-memory loopback and NATS JetStream (a `nats-server -js` of each case's own).

/// The loopback broker: what tests without a broker use.
mod loopback {
    use events::transport::{Loopback, LoopbackOptions};

    events::transport_conformance!(|setup: events::testing::transport::Setup| async move {
        Loopback::with_options(LoopbackOptions::new().local(setup.local))
    });
}

/// NATS JetStream, with an ack wait of one second so that an unsettled message comes back
/// within the suite's wait.
mod nats {
    use std::sync::Arc;
    use std::time::Duration;

    use events::Event;
    use events::nats::{Nats, NatsOptions};
    use events::transport::{
        BoxFuture, Consumer, ConsumerSpec, Outgoing, SendError, Sent, Transport, TransportError,
    };
    use events_tests::NatsServer;

    /// The suite's local event, as a NATS user declares one.
    #[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[event(name = "conformance.local")]
    struct Local {}

    /// The transport with the server it talks to, which lives as long as any clone.
    #[derive(Clone)]
    struct OwnServer {
        nats: Nats,
        _server: Arc<NatsServer>,
    }

    impl Transport for OwnServer {
        fn is_local(&self, name: &str) -> bool {
            self.nats.is_local(name)
        }
        fn send<'a>(&'a self, message: Outgoing<'a>) -> BoxFuture<'a, Result<Sent, SendError>> {
            self.nats.send(message)
        }
        fn send_batch<'a>(
            &'a self,
            messages: Vec<Outgoing<'a>>,
        ) -> BoxFuture<'a, Vec<Result<Sent, SendError>>> {
            self.nats.send_batch(messages)
        }
        fn consumer<'a>(
            &'a self,
            spec: ConsumerSpec,
        ) -> BoxFuture<'a, Result<Box<dyn Consumer>, TransportError>> {
            self.nats.consumer(spec)
        }
        fn address(&self, name: &str) -> String {
            self.nats.address(name)
        }
    }

    events::transport_conformance!(|setup: events::testing::transport::Setup| async move {
        assert_eq!(setup.local, Local::NAME);
        let server = NatsServer::start();
        let options = NatsOptions::new("conformance")
            .ack_wait(Duration::from_secs(1))
            .local::<Local>();
        let nats = Nats::connect(&server.url(), options).await.unwrap();
        OwnServer {
            nats,
            _server: Arc::new(server),
        }
    });
}
