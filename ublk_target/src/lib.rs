//! ublk devices (placeholder until the daemon issue lands).
