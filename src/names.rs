//! Which device of a pool a request's names pick: a snapshot named `NAME` or
//! `ORIGIN@NAME`, an origin named by a request's `origin` field (`--origin`), or
//! the first origin when a request names none (what a request of an older client,
//! which has no `origin` field, always means). Used by the service's ops and the
//! offline `map` and `diff`.
//!
//! # Rules
//! - No `origin`: a snapshot name is looked up as [`Store::lookup`] does (bare
//!   names while the store has one origin); no snapshot means the first origin.
//! - `origin` given: it must name an origin of the store ([`exception_store::Error::NoSuchOrigin`]
//!   otherwise); a bare snapshot name is that origin's; an `ORIGIN@NAME` of
//!   another origin contradicts it (refused, [`Error::Invalid`]).
use crate::{Error, Result};
use exception_store::{Dev, OriginId, Store};

/// The origin called `name`.
pub fn origin(s: &Store, name: &str) -> Result<OriginId> {
    s.origin_by_name(name)
        .ok_or_else(|| Error::Store(exception_store::Error::NoSuchOrigin(name.to_owned())))
}

/// The origin a request names (`None`: the first).
pub fn origin_or_first(s: &Store, name: Option<&str>) -> Result<OriginId> {
    name.map_or(Ok(0), |n| origin(s, n))
}

/// Snapshot `name` of origin `origin` (when given) as [`Store::lookup`] finds it:
/// `ORIGIN@NAME` in a pool, the name as given otherwise (module documentation).
pub fn qualify(s: &Store, origin: Option<&str>, name: &str) -> Result<String> {
    let Some(o) = origin else {
        return Ok(name.to_owned());
    };
    let k = self::origin(s, o)?;
    if s.origins().len() <= 1 {
        // one origin: bare names, `@` is part of a name
        return Ok(name.to_owned());
    }
    if let Some((x, _)) = name.split_once('@') {
        if let Some(other) = s.origin_by_name(x) {
            if other == k {
                return Ok(name.to_owned());
            }
            if s.lookup_in(k, name).is_none() {
                return Err(Error::Invalid(format!(
                    "{name:?} is a snapshot of origin {x:?}, but --origin names {o:?}"
                )));
            }
        }
    }
    Ok(format!("{o}@{name}"))
}

/// The device a request names: snapshot `name` ([`qualify`]d by `origin`), or
/// with no name the origin `origin` (the first when `None`).
pub fn device(s: &Store, origin: Option<&str>, name: Option<&str>) -> Result<Dev> {
    match name {
        None => origin_or_first(s, origin).map(Dev::Origin),
        Some(n) => {
            let q = qualify(s, origin, n)?;
            s.lookup(&q).map(Dev::Snap).ok_or(Error::NoSuchSnapshot(q))
        }
    }
}

#[cfg(test)]
mod tests;
