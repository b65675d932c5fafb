//! The capability decoder takes text straight from a URL fragment: it must never panic, and
//! whatever it accepts must encode back to the same text.
#![no_main]

use confab_keys::{AccountCertificate, Invite};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(invite) = Invite::from_bytes(data) {
        assert_eq!(invite.to_bytes(), data);
        assert_eq!(Invite::from_text(&invite.to_text()).as_ref(), Ok(&invite));
    }
    if let Ok(cert) = AccountCertificate::from_bytes(data) {
        assert_eq!(cert.to_bytes(), data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Invite::from_text(text);
        let _ = AccountCertificate::from_text(text);
    }
});
