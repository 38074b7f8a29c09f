//! One module per subcommand: its arguments and a call into the library.
pub mod activate;
pub mod check;
pub mod create;
pub mod deactivate;
pub mod delete;
pub mod diff;
pub mod dump;
pub mod export;
pub mod format;
pub mod grow_store;
pub mod hold;
pub mod list;
pub mod map;
pub mod merge;
pub mod meter;
pub mod origin;
pub mod prune;
pub mod receive;
pub mod resize_origin;
pub mod send;
pub mod status;
pub mod systemd_units;

use crate::output::Output;
use serde::Serialize;
use ublk_snapd::{
    client,
    protocol::{Op, Reply},
};

/// The one-request commands: send `op`, take the reply `pick` accepts (`pick` turns
/// any other into an error), and print it as JSON or as the text `human` makes of it.
/// `pick!(Variant)` makes the `pick` that accepts `Reply::Variant` alone.
pub fn request_one<T: Serialize>(
    out: &Output,
    op: Op,
    pick: impl FnOnce(Reply) -> anyhow::Result<T>,
    human: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    let v = pick(client::request(&out.socket, op)?)?;
    out.emit(&v, || human(&v))
}

/// `request_one`'s `pick` accepting `Reply::$variant` alone.
macro_rules! pick {
    ($variant:ident) => {
        |r| match r {
            ublk_snapd::protocol::Reply::$variant(c) => Ok(c),
            other => Err($crate::cmd::create::unexpected(&other)),
        }
    };
}
pub(crate) use pick;
