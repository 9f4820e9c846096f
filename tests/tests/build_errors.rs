//! `Bus::build` fails with one error that lists every problem. Its own binary: the duplicate
//! event below makes every bus in this binary fail to build.

#![allow(unreachable_pub)]

use events::{Bus, Problem, State, handler};

mod billing {
    #[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[event(name = "order.placed", version = 2)]
    pub struct OrderPlaced;
}

mod shipping {
    #[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[event(name = "order.placed", version = 2)]
    pub struct OrderPlaced;

    /// The same name at another version is fine.
    #[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[event(name = "order.placed", version = 3)]
    pub struct OrderPlacedV3;
}

struct Db;
struct Mailer;

#[handler]
fn needs_db(_: &billing::OrderPlaced, _db: State<Db>) {}

#[handler]
fn needs_both(_: &shipping::OrderPlaced, _db: State<Db>, _mail: State<std::sync::Mutex<Mailer>>) {}

mod a {
    #[events::handler(name = "ship")]
    fn ship(_: &super::shipping::OrderPlacedV3) {}
}
mod b {
    #[events::handler(name = "ship")]
    fn ship(_: &super::shipping::OrderPlacedV3) {}
}

mod versions {
    #[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[event(name = "invoice.sent", version = 1)]
    pub struct V1;

    /// Does not upcast from v1: the gap.
    #[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[event(name = "invoice.sent", version = 2)]
    pub struct V2;

    #[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[event(name = "invoice.sent", version = 3, upcast_from = V2)]
    pub struct V3;

    impl From<V2> for V3 {
        fn from(_: V2) -> V3 {
            V3
        }
    }
}

mod queries {
    #[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[event(kind = "query", response = u32)]
    pub struct Unanswered;

    #[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[event(response = String)]
    pub struct AnsweredTwice;

    #[events::handler]
    fn first(_: &AnsweredTwice) -> String {
        "one".into()
    }

    #[events::handler]
    fn second(_: &AnsweredTwice) -> Result<String, std::io::Error> {
        Ok("two".into())
    }

    /// Listening is not answering.
    #[events::handler]
    fn listener(_: &Unanswered) {}
}

#[test]
fn build_lists_every_problem_at_once() {
    let err = Bus::builder().build().unwrap_err();
    assert_eq!(
        err.problems(),
        [
            Problem::DuplicateEvent {
                name: "order.placed",
                version: 2,
                types: vec![
                    "build_errors::billing::OrderPlaced",
                    "build_errors::shipping::OrderPlaced"
                ],
            },
            Problem::UpcastGap {
                name: "invoice.sent",
                from: 1,
                to: 2,
                declared: None,
            },
            Problem::MissingState {
                handler: "build_errors::needs_both",
                state: "Db",
                location: format!("{}:31", file!()),
            },
            Problem::MissingState {
                handler: "build_errors::needs_both",
                state: "std::sync::Mutex<Mailer>",
                location: format!("{}:31", file!()),
            },
            Problem::MissingState {
                handler: "build_errors::needs_db",
                state: "Db",
                location: format!("{}:28", file!()),
            },
            Problem::DuplicateHandlerName {
                name: "ship",
                locations: vec![format!("{}:35", file!()), format!("{}:39", file!()),],
            },
            Problem::SeveralResponders {
                query: "answered.twice",
                handlers: vec![
                    format!("`build_errors::queries::first` ({}:73)", file!()),
                    format!("`build_errors::queries::second` ({}:78)", file!()),
                ],
            },
            Problem::NoResponder {
                query: "unanswered",
                type_name: "build_errors::queries::Unanswered",
                response: "u32",
            },
        ]
    );
    let text = err.to_string();
    assert!(
        text.starts_with("cannot build the bus: 8 problems\n  - "),
        "{text}"
    );
    assert!(text.contains(
        "event `order.placed` version 2 is declared by 2 types: \
         `build_errors::billing::OrderPlaced` and `build_errors::shipping::OrderPlaced`; \
         give each its own name or version"
    ));
    assert!(text.contains(&format!(
        "handler `build_errors::needs_db` ({}:28) takes `State<Db>`, but the bus was not \
         given one: add `.state(value)` with a `Db` to the builder",
        file!()
    )));
    assert!(text.contains("2 handlers are named `ship` (at "), "{text}");
    assert!(
        text.contains("give each a unique `#[handler(name = \"..\")]`"),
        "{text}"
    );
    assert!(
        text.contains(
            "query `unanswered` (`build_errors::queries::Unanswered`) has no responder: add a \
             `#[handler]` that takes `&Unanswered` and returns `u32`, or, if it is in a library \
             crate, link that crate with `events::link!(crate_name);` in the binary"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "event `invoice.sent` v2 does not upcast from v1; the chain has a gap, so v1 payloads \
             cannot reach v2 handlers"
        ),
        "{text}"
    );
    assert!(
        text.contains("query `answered.twice` has 2 responders (`build_errors::queries::first`"),
        "{text}"
    );
}

#[test]
fn a_query_declared_outside_the_scope_may_go_unanswered() {
    let outside = Bus::builder().scope("build_errors::a").build().unwrap_err();
    assert!(
        outside.problems().iter().all(|p| matches!(
            p,
            Problem::DuplicateEvent { .. } | Problem::UpcastGap { .. }
        )),
        "{outside}"
    );
    let inside = Bus::builder()
        .scope("build_errors::queries")
        .build()
        .unwrap_err();
    let query_problems = inside
        .problems()
        .iter()
        .filter(|p| {
            matches!(
                p,
                Problem::NoResponder { .. } | Problem::SeveralResponders { .. }
            )
        })
        .count();
    assert_eq!(query_problems, 2, "{inside}");
}

#[test]
fn giving_the_state_removes_those_problems() {
    let err = Bus::builder()
        .state(Db)
        .state(std::sync::Mutex::new(Mailer))
        .build()
        .unwrap_err();
    assert!(
        err.problems()
            .iter()
            .all(|p| !matches!(p, Problem::MissingState { .. }))
    );
    assert_eq!(err.problems().len(), 5);
}

/// Issue 17: `build()?` in `main` prints the error's `Debug`: it is the advice, with the
/// state type as the handler writes it (not std's `std::sync::poison::mutex::Mutex`) and
/// the handler's location.
#[test]
fn what_main_prints_for_a_build_error_is_the_advice() {
    let err = Bus::builder().state(Db).build().unwrap_err();
    let printed = format!("{err:?}");
    assert_eq!(printed, err.to_string());
    assert!(
        printed.contains(&format!(
            "handler `build_errors::needs_both` ({}:31) takes `State<std::sync::Mutex<Mailer>>`",
            file!()
        )),
        "{printed}"
    );
    assert!(
        printed.contains("add `.state(value)` with a `std::sync::Mutex<Mailer>`"),
        "{printed}"
    );
    assert!(!printed.contains("poison"), "{printed}");
    // The structure is one `{:#?}` away.
    assert!(format!("{err:#?}").contains("MissingState"));
}
