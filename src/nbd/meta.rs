//! The metadata contexts `NBD_CMD_BLOCK_STATUS` answers, and how option queries
//! select them.
//!
//! - `base:allocation` (protocol document): `NBD_STATE_HOLE | NBD_STATE_ZERO` where
//!   the export reads zeros because of a hole or discard (a hole element of some
//!   version), 0 where it reads data. Inheriting data from an older layer is *not*
//!   a hole: such a range reads data.
//! - `qemu:allocation-depth` (QEMU's meaning): 1 = the export's own data, N = the
//!   Nth layer of its ancestry (the snapshots it inherits from, nearest first; the
//!   origin is the bottom layer), 0 = nowhere (never happens here: every range is
//!   at least on the origin).
//! - `ublk-snap:owner`: the label (version number in the store) whose element the
//!   range reads, 0 for the origin's own bytes.
//!
//! Context ids are fixed: 1, 2, 3 in that order.

/// One metadata context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Context {
    /// `base:allocation`.
    Allocation,
    /// `qemu:allocation-depth`.
    Depth,
    /// `ublk-snap:owner`.
    Owner,
}

/// Every context, in id order.
pub const ALL: [Context; 3] = [Context::Allocation, Context::Depth, Context::Owner];

impl Context {
    /// Its name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Context::Allocation => "base:allocation",
            Context::Depth => "qemu:allocation-depth",
            Context::Owner => "ublk-snap:owner",
        }
    }

    /// Its id on the wire.
    pub fn id(self) -> u32 {
        match self {
            Context::Allocation => 1,
            Context::Depth => 2,
            Context::Owner => 3,
        }
    }

    fn namespace(self) -> &'static str {
        match self {
            Context::Allocation => "base:",
            Context::Depth => "qemu:",
            Context::Owner => "ublk-snap:",
        }
    }
}

/// What `NBD_OPT_LIST_META_CONTEXT` lists for `queries`: everything for none, else
/// the exact names and the namespaces (`base:`, `qemu:`, `ublk-snap:`) asked for.
pub fn list(queries: &[String]) -> Vec<Context> {
    if queries.is_empty() {
        return ALL.to_vec();
    }
    ALL.into_iter()
        .filter(|c| queries.iter().any(|q| q == c.name() || q == c.namespace()))
        .collect()
}

/// What `NBD_OPT_SET_META_CONTEXT` selects: the exact names only (a namespace alone
/// selects nothing), without duplicates, in id order.
pub fn select(queries: &[String]) -> Vec<Context> {
    ALL.into_iter()
        .filter(|c| queries.iter().any(|q| q == c.name()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn list_and_select() {
        assert_eq!(list(&[]), ALL.to_vec());
        assert_eq!(list(&q(&["qemu:"])), vec![Context::Depth]);
        assert_eq!(
            list(&q(&["base:allocation", "nope:x"])),
            vec![Context::Allocation]
        );
        assert_eq!(select(&q(&["qemu:"])), vec![]);
        assert_eq!(
            select(&q(&[
                "ublk-snap:owner",
                "base:allocation",
                "base:allocation"
            ])),
            vec![Context::Allocation, Context::Owner]
        );
    }
}
