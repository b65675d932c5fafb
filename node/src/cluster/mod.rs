//! Several nodes as one service. `operator` is the operator's side (`confab cluster ...`,
//! run off the nodes); `membership` and `placement` are the nodes' sans-IO logic (which
//! epoch to follow, which node is a meeting's home); `net` is the libp2p control plane that
//! connects the members and replicates what admission needs (`store::replica`).

pub mod cascade;
pub mod edges;
pub mod membership;
pub mod net;
mod operator;
pub mod placement;

use std::sync::{Arc, RwLock};

pub use operator::command;

/// The node keys whose certificates this node honours: its own alone, or in a cluster every
/// member's (the control plane keeps it up to date as epochs change).
#[derive(Debug, Clone)]
pub struct Trusted(Arc<RwLock<Vec<[u8; 32]>>>);

impl Trusted {
    pub fn only(key: [u8; 32]) -> Trusted {
        Trusted(Arc::new(RwLock::new(vec![key])))
    }

    pub fn keys(&self) -> Vec<[u8; 32]> {
        self.0.read().expect("never poisoned").clone()
    }

    pub fn set(&self, keys: Vec<[u8; 32]>) {
        *self.0.write().expect("never poisoned") = keys;
    }
}

/// A 32-byte key written as 64 hex digits; `what` names it in the error.
pub fn parse_key(hex: &str, what: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = crate::secrets::unhex(hex.trim()).filter(|b| b.len() == 32);
    let key: [u8; 32] = bytes.and_then(|b| b.try_into().ok()).ok_or_else(|| anyhow::anyhow!("{what} is 64 hexadecimal digits"))?;
    if !confab_keys::is_valid_public_key(&key) {
        anyhow::bail!("{} is not an ed25519 public key", hex.trim());
    }
    Ok(key)
}
