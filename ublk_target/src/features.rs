//! [`Features`]: the ublk feature bits (`UBLK_F_*`) of the driver, or of one device,
//! and their names.
//!
//! What a kernel can do is read from the driver (`UBLK_U_CMD_GET_FEATURES`, kernels
//! from 6.5), never guessed from its version: [`Features::of_driver`]. What a device
//! was created with is its `dev_info.flags` ([`crate::Device::features`]); its
//! [`DataPath`] follows from them.
//!
//! # Invariants
//! - [`Features::names`] lists every set bit once, in bit order: a known bit by its
//!   name (the `UBLK_F_` suffix in lower case), an unknown one as `bitN`, so nothing a
//!   newer driver offers is hidden.
use libublk::{ctrl::UblkCtrl, sys};

use crate::{control::ensure_ctrl_ring, Result};

/// Known feature bits, in bit order, by the names `status` and the logs use.
const NAMES: [(u64, &str); 15] = [
    (sys::UBLK_F_SUPPORT_ZERO_COPY as u64, "zero_copy"),
    (sys::UBLK_F_URING_CMD_COMP_IN_TASK as u64, "comp_in_task"),
    (sys::UBLK_F_NEED_GET_DATA as u64, "need_get_data"),
    (sys::UBLK_F_USER_RECOVERY as u64, "user_recovery"),
    (
        sys::UBLK_F_USER_RECOVERY_REISSUE as u64,
        "user_recovery_reissue",
    ),
    (sys::UBLK_F_UNPRIVILEGED_DEV as u64, "unprivileged_dev"),
    (sys::UBLK_F_CMD_IOCTL_ENCODE as u64, "cmd_ioctl_encode"),
    (sys::UBLK_F_USER_COPY as u64, "user_copy"),
    (sys::UBLK_F_ZONED as u64, "zoned"),
    (1 << 9, "user_recovery_fail_io"),
    (sys::UBLK_F_UPDATE_SIZE as u64, "update_size"),
    (sys::UBLK_F_AUTO_BUF_REG as u64, "auto_buf_reg"),
    (sys::UBLK_F_QUIESCE as u64, "quiesce"),
    (1 << 13, "per_io_daemon"),
    (1 << 14, "buf_reg_off_daemon"),
];

/// Bits that mean the kernel does not copy request data through the server.
const ZERO_COPY_BITS: u64 = (sys::UBLK_F_SUPPORT_ZERO_COPY | sys::UBLK_F_AUTO_BUF_REG) as u64;

/// A set of `UBLK_F_*` bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features(pub u64);

/// How a device's request data moves between the kernel and the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataPath {
    /// The kernel copies every request's data to or from the server's buffer.
    Copy,
    /// The server does I/O on the request's pages (registered io_uring buffers).
    ZeroCopy,
}

impl DataPath {
    /// "copy" or "zero-copy", as `status` spells it.
    pub fn name(self) -> &'static str {
        match self {
            DataPath::Copy => "copy",
            DataPath::ZeroCopy => "zero-copy",
        }
    }
}

impl Features {
    /// `UBLK_F_UPDATE_SIZE`: the driver resizes a running device
    /// ([`crate::Device::update_size`]; Linux 6.16+).
    pub const UPDATE_SIZE: u64 = sys::UBLK_F_UPDATE_SIZE as u64;

    /// What the loaded driver offers (`UBLK_U_CMD_GET_FEATURES`). `Ok(None)` when the
    /// driver does not answer the command (kernels before 6.5).
    pub fn of_driver() -> Result<Option<Features>> {
        crate::check_available()?;
        ensure_ctrl_ring()?;
        Ok(UblkCtrl::get_features().map(Features))
    }

    /// Whether every bit of `bits` is set.
    pub fn has(self, bits: u64) -> bool {
        self.0 & bits == bits
    }

    /// The data path a device with these flags uses.
    pub fn data_path(self) -> DataPath {
        if self.0 & ZERO_COPY_BITS != 0 {
            DataPath::ZeroCopy
        } else {
            DataPath::Copy
        }
    }

    /// The name of every set bit, in bit order (see the module invariants).
    pub fn names(self) -> Vec<String> {
        (0..64)
            .map(|b| 1u64 << b)
            .filter(|bit| self.0 & bit != 0)
            .map(|bit| match NAMES.iter().find(|(b, _)| *b == bit) {
                Some((_, name)) => (*name).to_string(),
                None => format!("bit{}", bit.trailing_zeros()),
            })
            .collect()
    }
}

impl std::fmt::Display for Features {
    /// `0x1234 (name name ...)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x} ({})", self.0, self.names().join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_bits() {
        assert!(Features(0).names().is_empty());
        // 7.2's driver: bits 0..=19.
        let all = Features(0xfffff).names();
        assert_eq!(all.len(), 20);
        assert_eq!(all[0], "zero_copy");
        assert_eq!(all[11], "auto_buf_reg");
        assert_eq!(all[14], "buf_reg_off_daemon");
        assert_eq!(all[15..], ["bit15", "bit16", "bit17", "bit18", "bit19"]);
        // Known bits sit where their names say.
        for (i, (bit, _)) in NAMES.iter().enumerate() {
            assert_eq!(*bit, 1 << i);
        }
        assert_eq!(Features(1 << 63).names(), ["bit63"]);
    }

    #[test]
    fn data_path_from_the_flags() {
        assert_eq!(Features(0x48).data_path(), DataPath::Copy);
        assert_eq!(
            Features(sys::UBLK_F_AUTO_BUF_REG as u64).data_path(),
            DataPath::ZeroCopy
        );
        assert_eq!(Features(1).data_path(), DataPath::ZeroCopy);
        assert!(Features(0x18).has(0x08));
        assert!(!Features(0x18).has(0x28));
        assert_eq!(
            Features(0x18).to_string(),
            "0x18 (user_recovery user_recovery_reissue)"
        );
    }
}
