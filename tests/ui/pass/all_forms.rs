//! Every accepted form of event and handler compiles.

use events::{Context, Event, HandlerError, Meta, State, handler};

/// A struct event with every key.
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "order.placed", version = 2, kind = "notification", priority = -3, crate = ::events)]
struct OrderPlaced {
    id: u64,
}

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(kind = "command")]
enum Command {
    Start,
    Stop { reason: String },
}

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Unit;

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Tuple(u64, String);

struct Db;

#[derive(Debug, thiserror::Error)]
#[error("oops")]
struct Oops;

fn big(ev: &OrderPlaced, _: &Meta) -> bool {
    ev.id > 10
}

#[handler]
fn plain(_: &OrderPlaced) {}

#[handler(crate = ::events)]
fn with_crate_path(_: &OrderPlaced) {}

#[handler(name = "orders.with_everything", priority = 10, filter = big)]
fn with_everything(_ev: &OrderPlaced, _ctx: &Context, _db: State<Db>) -> Result<(), HandlerError> {
    Ok(())
}

#[handler]
fn state_first(_: &Command, _db: State<Db>, _ctx: &Context) -> Result<(), Oops> {
    Err(Oops)
}

#[handler]
fn returns_anyhow(_: &Unit) -> anyhow::Result<()> {
    Ok(())
}

#[handler(priority = -1)]
async fn asynchronous(ev: &Tuple, ctx: &Context) -> Result<(), HandlerError> {
    ctx.publish(Unit).await?;
    let _ = &ev.1;
    Ok(())
}

#[handler]
async fn async_unit(_: &Tuple, _db: State<Db>) {}

#[handler(concurrency = 2, timeout = "250ms")]
async fn limited(_: &Tuple) {}

fn not_internal(ev: &events::AnyEvent, _: &Meta) -> bool {
    !ev.name().starts_with("internal.")
}

#[handler(priority = 100, filter = not_internal)]
fn audit_everything(ev: &events::AnyEvent, _ctx: &Context) -> Result<(), HandlerError> {
    let _json = ev.to_json()?;
    Ok(())
}

#[handler(pattern = "order.*")]
async fn audit_orders(ev: &events::AnyEvent, _db: State<Db>) {
    let _ = ev.downcast_ref::<OrderPlaced>();
}

#[handler]
pub(crate) fn visible(_: &Unit) {}

fn main() {
    fn local_scope() {
        #[handler]
        fn nested(_: &Unit) {}
    }
    local_scope();
    let _ = (OrderPlaced::NAME, Command::KIND);
}
