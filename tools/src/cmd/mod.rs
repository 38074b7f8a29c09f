//! One module per subcommand: its arguments and a call into the library.
pub mod activate;
pub mod create;
pub mod deactivate;
pub mod delete;
pub mod format;
pub mod list;
pub mod merge;
pub mod status;
