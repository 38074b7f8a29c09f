//! Newtypes for every unit the store counts in, so a metadata block number is never
//! mistaken for a data chunk number.
use std::fmt;

macro_rules! id {
    ($(#[$m:meta])* $name:ident($t:ty)) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub $t);
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id!(
    /// A 4 KiB metadata block on the store device, counted from byte 0.
    BlockNr(u64)
);
id!(
    /// A data chunk on the store device, counted from byte 0 in units of the chunk size.
    ChunkNr(u64)
);
id!(
    /// A logical chunk address on the origin (the "address" of the design note).
    Addr(u64)
);
id!(
    /// A label of the version tree as written in metadata (0 is the origin).
    Label(u32)
);
id!(
    /// A transaction id; the superblock with the highest valid one is current.
    TxnId(u64)
);
id!(
    /// A stable, user-facing snapshot id (a device), mapped to a [`Label`] by a table.
    SnapId(u32)
);
