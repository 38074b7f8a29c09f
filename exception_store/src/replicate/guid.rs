//! Snapshot identities across stores.
use crate::SnapInfo;
use blockdev::ids::SnapId;
use std::collections::BTreeMap;

/// The guid of a snapshot taken on this store: derived from the store's uuid and
/// the snapshot's id and creation time (stable, unique per store and snapshot).
pub fn local_guid(store_uuid: &[u8; 16], snap: &SnapInfo) -> [u8; 16] {
    let mut seed = Vec::with_capacity(32);
    seed.extend_from_slice(store_uuid);
    seed.extend_from_slice(&snap.id.0.to_le_bytes());
    seed.extend_from_slice(&snap.created.to_le_bytes());
    let mut out = [0u8; 16];
    let mut crc = 0u32;
    for (i, part) in out.chunks_mut(4).enumerate() {
        crc = crc32c::crc32c_append(crc ^ (i as u32 + 1), &seed);
        part.copy_from_slice(&crc.to_le_bytes());
    }
    out
}

/// The guids of snapshots that arrived by `receive` (they keep the sender's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuidBook {
    /// Received snapshot id → its guid.
    pub received: BTreeMap<SnapId, [u8; 16]>,
}

impl GuidBook {
    /// A snapshot's guid: the received one, else the local one.
    pub fn guid_of(&self, store_uuid: &[u8; 16], snap: &SnapInfo) -> [u8; 16] {
        self.received
            .get(&snap.id)
            .copied()
            .unwrap_or_else(|| local_guid(store_uuid, snap))
    }

    /// The live snapshot among `snaps` with `guid`.
    pub fn find<'a>(
        &self,
        store_uuid: &[u8; 16],
        snaps: &'a [SnapInfo],
        guid: &[u8; 16],
    ) -> Option<&'a SnapInfo> {
        snaps.iter().find(|s| self.guid_of(store_uuid, s) == *guid)
    }

    /// Text form: one `<id> <guid hex>` line per received snapshot.
    pub fn encode(&self) -> String {
        self.received
            .iter()
            .map(|(id, g)| format!("{} {}\n", id.0, super::hex(g)))
            .collect()
    }

    /// Parse [`GuidBook::encode`]'s form; `None` on any bad line.
    pub fn decode(s: &str) -> Option<GuidBook> {
        let mut received = BTreeMap::new();
        for line in s.lines().filter(|l| !l.trim().is_empty()) {
            let (id, g) = line.split_once(' ')?;
            received.insert(SnapId(id.parse().ok()?), super::parse_hex16(g.trim())?);
        }
        Some(GuidBook { received })
    }
}
