//! Any text a browser could send on the signaling WebSocket: parsed and validated, never a
//! panic. Names in joins go through the same cleaning the room applies.
#![no_main]

use confab_node::meeting::protocol::{ClientMessage, display_name, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(ClientMessage::Join { name, .. }) = parse(text) {
        let _ = display_name(&name);
    }
    let _ = display_name(text);
});
