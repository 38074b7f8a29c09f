//! Errors of the B-tree layer.
use blockdev::{ids::BlockNr, Corrupt};
use std::io;

/// An error of the B-tree layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The device failed.
    #[error("I/O error on metadata block {block}: {source}")]
    Io {
        /// The block being read or written.
        block: BlockNr,
        /// What the device said.
        #[source]
        source: io::Error,
    },
    /// A metadata block failed verification.
    #[error("corrupt metadata: {0}")]
    Corrupt(Corrupt),
    /// No free block for metadata.
    #[error("out of metadata space")]
    NoSpace,
}

/// Result of the B-tree layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

// By hand rather than `#[from]`: the message already shows the block, and a `source`
// would make `{:#}` print it twice.
impl From<Corrupt> for Error {
    fn from(c: Corrupt) -> Self {
        Error::Corrupt(c)
    }
}
