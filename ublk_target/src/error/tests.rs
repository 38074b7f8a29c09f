use super::*;

#[test]
fn result_stays_small() {
    // The error crosses only the control path, but keep it cheap to move anyway.
    assert!(std::mem::size_of::<Result<u32, Error>>() <= 32);
}

#[test]
fn ublk_errors_keep_their_errno() {
    let e = Error::ublk("add", libublk::UblkError::OtherError(-libc::EBUSY));
    match e {
        Error::Ublk { op, source } => {
            assert_eq!(op, "add");
            assert_eq!(source.raw_os_error(), Some(libc::EBUSY));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn not_available_hints_modprobe() {
    assert!(Error::NotAvailable
        .to_string()
        .contains("modprobe ublk_drv"));
}
