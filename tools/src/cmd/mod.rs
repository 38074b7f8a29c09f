//! One module per subcommand: its arguments and a call into the library.
pub mod activate;
pub mod check;
pub mod create;
pub mod deactivate;
pub mod delete;
pub mod dump;
pub mod format;
pub mod hold;
pub mod list;
pub mod merge;
pub mod prune;
pub mod status;
pub mod systemd_units;
