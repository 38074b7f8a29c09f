//! The `map` and `diff` pages as the wire carries them: what a device reads, range
//! by range ([`MapReport`]), and where two devices may read differently
//! ([`DiffReport`]). The daemon's `inspect` module builds them from the store; a
//! page stops short of the asked end where `next_offset` says.
use serde::{Deserialize, Serialize};

/// The reply to `map`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapReport {
    /// The device: a snapshot's name, or `None` for the origin.
    pub name: Option<String>,
    /// Device size in bytes.
    pub size_bytes: u64,
    /// Chunk size of the store.
    pub chunk_size: u64,
    /// Its layers, 1 first (the device itself), the origin last.
    pub layers: Vec<LayerEntry>,
    /// Runs of this page, ascending.
    pub extents: Vec<MapEntry>,
    /// Bytes of this page by kind.
    pub totals: MapTotals,
    /// Bytes of store data only this device reads: what deleting it gives back.
    pub unshared_bytes: u64,
    /// Where the next page starts, if this one stopped short of the asked end.
    pub next_offset: Option<u64>,
}

/// One layer of a map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerEntry {
    /// 1 for the device itself.
    pub depth: u32,
    /// The snapshot, or `None` for the origin.
    pub snapshot: Option<String>,
    /// Its version label (as `dump` shows it).
    pub label: u32,
}

/// What a run of a map reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Store data of the device's own version.
    Own,
    /// Store data of a snapshot above it (`from`).
    Inherited,
    /// The origin's data, at the same offset.
    Origin,
    /// Zeros (a hole: discard or write-zeroes), of the layer `depth`.
    Zero,
}

/// One run of a map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapEntry {
    /// First byte.
    pub offset: u64,
    /// Bytes.
    pub len: u64,
    /// What it reads.
    pub kind: Kind,
    /// The layer holding it (1: the device itself; the last: the origin).
    pub depth: u32,
    /// The snapshot of that layer (`None`: the device itself or the origin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The version label owning it (0: the origin).
    pub label: u32,
    /// Byte position of its data in the store (own and inherited runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_offset: Option<u64>,
}

/// Bytes by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapTotals {
    /// Own store data.
    pub own: u64,
    /// Store data inherited from snapshots above.
    pub inherited: u64,
    /// Read from the origin.
    pub origin: u64,
    /// Zeros.
    pub zero: u64,
}

impl MapTotals {
    /// Add another page's totals.
    pub fn add(&mut self, o: &MapTotals) {
        self.own += o.own;
        self.inherited += o.inherited;
        self.origin += o.origin;
        self.zero += o.zero;
    }
}

/// The reply to `diff`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffReport {
    /// One side (`None`: the origin).
    pub from: Option<String>,
    /// The other side (`None`: the origin).
    pub to: Option<String>,
    /// Device size in bytes.
    pub size_bytes: u64,
    /// Runs of this page where the two may read differently, ascending.
    pub ranges: Vec<Range>,
    /// Bytes in `ranges`.
    pub bytes: u64,
    /// Where the next page starts, if this one stopped short of the asked end.
    pub next_offset: Option<u64>,
}

/// A byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// First byte.
    pub offset: u64,
    /// Bytes.
    pub len: u64,
}
