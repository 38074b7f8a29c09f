//! `map` and `diff` on a store, paged into the wire's [`MapReport`] and
//! [`DiffReport`] (`protocol::inspect`): what a device reads, range by range (own
//! data, inherited from a snapshot, the origin, zeros), and where two devices may
//! read differently. Built on [`Store::map`] and [`Store::diff`] (the element and
//! label indexes; no data is read), used online by the service and offline by
//! `snapctl map --store`.
//!
//! Replies are paged: one reply covers as much of the asked range as fits in
//! [`MAX_ENTRIES`] entries and says where the next page starts (`next_offset`), so
//! a fragmented device never overflows the protocol's reply limit.
use crate::{
    names,
    protocol::inspect::{DiffReport, Kind, LayerEntry, MapEntry, MapReport, MapTotals, Range},
    Error, Result,
};
use exception_store::{
    map::{Layer, MapExtent, Owner},
    Store,
};
use std::collections::HashMap;

/// Most extents or ranges in one reply.
pub const MAX_ENTRIES: usize = 50_000;
/// Bytes of a device mapped per store call (a page gathers windows up to
/// [`MAX_ENTRIES`]).
const WINDOW_BYTES: u64 = 1 << 30;

/// The asked range, defaulting to the whole device and checked against it.
fn bounds(size: u64, offset: u64, len: Option<u64>) -> Result<(u64, u64)> {
    let len = len.unwrap_or(size.saturating_sub(offset));
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok((offset, end)),
        _ => Err(Error::Store(exception_store::Error::Invalid(format!(
            "{len} bytes at {offset} is past the end of the {size}-byte device"
        )))),
    }
}

/// One page of the map of snapshot `name` (`None`: the origin) of origin `origin`
/// (`None`: the first, or the one `name` names; [`crate::names::device`]) from
/// `offset` (`len`: to the end).
pub fn map(
    s: &mut Store,
    origin: Option<&str>,
    name: Option<&str>,
    offset: u64,
    len: Option<u64>,
) -> Result<MapReport> {
    map_page(s, origin, name, offset, len, MAX_ENTRIES)
}

fn map_page(
    s: &mut Store,
    origin: Option<&str>,
    name: Option<&str>,
    offset: u64,
    len: Option<u64>,
    max: usize,
) -> Result<MapReport> {
    let dev = names::device(s, origin, name)?;
    // the device's own size (a snapshot taken before a resize-origin is smaller)
    let size = s.dev_size(dev)?;
    let (mut pos, end) = bounds(size, offset, len)?;
    let layers = s.layers(dev)?;
    let names: HashMap<_, _> = s.snapshots().into_iter().map(|i| (i.id, i.name)).collect();
    let layer_name = |l: &Layer| l.snapshot.and_then(|id| names.get(&id).cloned());
    let mut extents = Vec::new();
    let mut totals = MapTotals::default();
    while pos < end && extents.len() < max {
        let n = (end - pos).min(WINDOW_BYTES);
        for e in s.map(dev, pos, n)? {
            if extents.len() == max {
                break;
            }
            let entry = entry(&e, &layers, s.chunk_size(), &layer_name);
            match entry.kind {
                Kind::Own => totals.own += e.len,
                Kind::Inherited => totals.inherited += e.len,
                Kind::Origin => totals.origin += e.len,
                Kind::Zero => totals.zero += e.len,
            }
            pos = e.offset + e.len;
            push_entry(&mut extents, entry);
        }
    }
    Ok(MapReport {
        name: name.map(str::to_owned),
        size_bytes: size,
        chunk_size: s.chunk_size(),
        layers: layers
            .iter()
            .map(|l| LayerEntry {
                depth: l.depth,
                snapshot: layer_name(l),
                label: l.label.0,
            })
            .collect(),
        extents,
        totals,
        unshared_bytes: s.unshared_chunks(dev)? * s.chunk_size(),
        next_offset: (pos < end).then_some(pos),
    })
}

/// Store maps are cut where store windows end; join such neighbours again.
fn push_entry(out: &mut Vec<MapEntry>, e: MapEntry) {
    if let Some(last) = out.last_mut() {
        let store_continues = match (last.store_offset, e.store_offset) {
            (None, None) => true,
            (Some(a), Some(b)) => a + last.len == b,
            _ => false,
        };
        if last.offset + last.len == e.offset
            && (last.kind, last.depth, last.label) == (e.kind, e.depth, e.label)
            && store_continues
        {
            last.len += e.len;
            return;
        }
    }
    out.push(e);
}

fn entry(
    e: &MapExtent,
    layers: &[Layer],
    chunk_size: u64,
    layer_name: &dyn Fn(&Layer) -> Option<String>,
) -> MapEntry {
    let from = if e.depth > 1 {
        layers.get(e.depth as usize - 1).and_then(layer_name)
    } else {
        None
    };
    let (kind, store_offset) = match e.owner {
        Owner::Origin => (Kind::Origin, None),
        Owner::Chunk { chunk, .. } => (
            if e.depth == 1 {
                Kind::Own
            } else {
                Kind::Inherited
            },
            Some(chunk.0 * chunk_size + e.offset % chunk_size),
        ),
        Owner::Hole { .. } => (Kind::Zero, None),
    };
    MapEntry {
        offset: e.offset,
        len: e.len,
        kind,
        depth: e.depth,
        from,
        label: e.owner.label().0,
        store_offset,
    }
}

/// One page of the diff of `from` and `to` (each a snapshot, `None` for the
/// origin) of origin `origin` (as [`map`]) from `offset` (`len`: to the end).
pub fn diff(
    s: &mut Store,
    origin: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    offset: u64,
    len: Option<u64>,
) -> Result<DiffReport> {
    diff_page(s, origin, from, to, offset, len, MAX_ENTRIES)
}

fn diff_page(
    s: &mut Store,
    origin: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    offset: u64,
    len: Option<u64>,
    max: usize,
) -> Result<DiffReport> {
    let (a, b) = (
        names::device(s, origin, from)?,
        names::device(s, origin, to)?,
    );
    // the larger device's size: past the smaller one everything differs
    let size = s.dev_size(a)?.max(s.dev_size(b)?);
    let (mut pos, end) = bounds(size, offset, len)?;
    let mut ranges: Vec<Range> = Vec::new();
    while pos < end && ranges.len() < max {
        let n = (end - pos).min(WINDOW_BYTES);
        let mut stop = pos + n;
        for (off, len) in s.diff(a, b, pos, n)? {
            if ranges.len() == max {
                stop = off;
                break;
            }
            match ranges.last_mut() {
                Some(last) if last.offset + last.len == off => last.len += len,
                _ => ranges.push(Range { offset: off, len }),
            }
        }
        pos = stop;
    }
    Ok(DiffReport {
        from: from.map(str::to_owned),
        to: to.map(str::to_owned),
        size_bytes: size,
        bytes: ranges.iter().map(|r| r.len).sum(),
        ranges,
        next_offset: (pos < end).then_some(pos),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockdev::MemDevice;
    use exception_store::{Dev, StoreOptions};
    use std::sync::Arc;

    const CS: u64 = 4096;

    /// A snapshot whose every other chunk was copied out: many extents.
    fn striped() -> Store {
        let origin = Arc::new(MemDevice::new(64 * CS));
        let dev = Arc::new(MemDevice::new(4 << 20));
        let mut s = Store::format(origin, dev, CS as u32, StoreOptions::default()).unwrap();
        s.create_snapshot("a", None, 0).unwrap();
        for c in (0..64).step_by(2) {
            s.write(Dev::Origin(0), c * CS, &[1; CS as usize]).unwrap();
        }
        s.create_snapshot("b", None, 0).unwrap();
        s
    }

    #[test]
    fn pages_join_into_the_whole_map() {
        let mut s = striped();
        let whole = map(&mut s, None, Some("a"), 0, None).unwrap();
        assert_eq!(whole.extents.len(), 64);
        assert_eq!(whole.next_offset, None);
        let mut joined = Vec::new();
        let mut totals = MapTotals::default();
        let mut offset = 0;
        loop {
            let page = map_page(&mut s, None, Some("a"), offset, None, 5).unwrap();
            assert!(page.extents.len() <= 5);
            totals.add(&page.totals);
            joined.extend(page.extents);
            match page.next_offset {
                Some(n) => offset = n,
                None => break,
            }
        }
        assert_eq!(joined, whole.extents);
        assert_eq!(totals, whole.totals);
        assert_eq!(totals.own, 32 * CS);
        assert_eq!(totals.origin, 32 * CS);
    }

    #[test]
    fn diff_pages_join_into_the_whole_diff() {
        let mut s = striped();
        let whole = diff(&mut s, None, Some("a"), Some("b"), 0, None).unwrap();
        assert_eq!(whole.ranges.len(), 32);
        let mut joined = Vec::new();
        let mut offset = 0;
        loop {
            let page = diff_page(&mut s, None, Some("a"), Some("b"), offset, None, 3).unwrap();
            assert!(page.ranges.len() <= 3);
            joined.extend(page.ranges);
            match page.next_offset {
                Some(n) => offset = n,
                None => break,
            }
        }
        assert_eq!(joined, whole.ranges);
        assert_eq!(whole.bytes, 32 * CS);
    }

    #[test]
    fn unknown_names_and_bad_ranges_are_errors() {
        let mut s = striped();
        assert!(matches!(
            map(&mut s, None, Some("zz"), 0, None),
            Err(Error::NoSuchSnapshot(_))
        ));
        assert!(map(&mut s, None, Some("a"), 60 * CS, Some(5 * CS)).is_err());
        assert!(diff(&mut s, None, Some("a"), None, u64::MAX, Some(2)).is_err());
    }
}
