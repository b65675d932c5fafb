//! The data directory: `confab.sqlite3` (accounts, tokens, meetings, revocations), `node.key`
//! (the node's ed25519 seed) and `tls/` (the self-signed certificate, when no PEM files are
//! configured). Everything is created on first start, readable by the owner only.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use confab_keys::{AccountKey, NodeKey};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::secrets::random_bytes;
use crate::store::Store;

const NODE_KEY_LABEL: &str = "confab-node-key-v1";
const ACCOUNT_KEY_LABEL: &str = "confab-account-key-v1";
const OPERATOR_KEY_LABEL: &str = "confab-operator-key-v1";

pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn open(root: &Path) -> anyhow::Result<DataDir> {
        fs::create_dir_all(root).with_context(|| format!("cannot create the data directory {}", root.display()))?;
        restrict(root, 0o700)?;
        Ok(DataDir { root: root.to_path_buf() })
    }

    pub fn store(&self) -> anyhow::Result<Store> {
        let path = self.root.join("confab.sqlite3");
        Store::open(&path).with_context(|| format!("cannot open the database {}", path.display()))
    }

    /// Where a cluster member keeps the highest membership epoch it has seen.
    pub fn membership_path(&self) -> PathBuf {
        self.root.join("membership.cfm")
    }

    /// Present while the node is being drained (`confab drain`).
    pub fn draining_path(&self) -> PathBuf {
        self.root.join("draining")
    }

    /// The node key, generated on first use.
    pub fn node_key(&self) -> anyhow::Result<NodeKey> {
        let seed = load_or_create_seed(&self.root.join("node.key"), NODE_KEY_LABEL)?;
        Ok(NodeKey::from_seed(seed))
    }

    /// A self-signed certificate for `hosts` (plus localhost and the loopback addresses),
    /// generated on first use and kept per host name.
    pub fn self_signed_tls(&self, host: &str) -> anyhow::Result<rustls::ServerConfig> {
        let dir = self.root.join("tls");
        fs::create_dir_all(&dir)?;
        restrict(&dir, 0o700)?;
        let safe_host: String = host.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect();
        let cert_path = dir.join(format!("self-signed-{safe_host}.pem"));
        let key_path = dir.join(format!("self-signed-{safe_host}.key"));
        if !cert_path.exists() || !key_path.exists() {
            let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
            if !names.iter().any(|n| n == host) {
                names.push(host.to_string());
            }
            let generated = rcgen::generate_simple_self_signed(names).context("cannot generate a self-signed certificate")?;
            write_private(&key_path, generated.signing_key.serialize_pem().as_bytes())?;
            fs::write(&cert_path, generated.cert.pem())?;
            tracing::info!(cert = %cert_path.display(), "generated a self-signed TLS certificate; browsers will warn until you configure tls_cert and tls_key");
        }
        tls_from_pem(&cert_path, &key_path)
    }
}

pub fn tls_from_pem(cert_path: &Path, key_path: &Path) -> anyhow::Result<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .with_context(|| format!("cannot read the TLS certificate {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("the TLS certificate {} is not valid PEM", cert_path.display()))?;
    if certs.is_empty() {
        bail!("the TLS certificate file {} holds no certificate", cert_path.display());
    }
    let key = PrivateKeyDer::from_pem_file(key_path).with_context(|| format!("cannot read the TLS private key {}", key_path.display()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and private key do not belong together")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// An account key kept in a file, for `confab invite`.
pub fn load_or_create_account_key(path: &Path) -> anyhow::Result<AccountKey> {
    Ok(AccountKey::from_seed(load_or_create_seed(path, ACCOUNT_KEY_LABEL)?))
}

/// The cluster operator's key, created if the file does not exist.
pub fn load_or_create_operator_key(path: &Path) -> anyhow::Result<confab_keys::OperatorKey> {
    Ok(confab_keys::OperatorKey::from_seed(load_or_create_seed(path, OPERATOR_KEY_LABEL)?))
}

/// The cluster operator's key, which must exist.
pub fn load_operator_key(path: &Path) -> anyhow::Result<confab_keys::OperatorKey> {
    let text = fs::read_to_string(path).with_context(|| format!("cannot read the operator key {} (made by `confab cluster init`)", path.display()))?;
    let seed = parse_seed(&text, OPERATOR_KEY_LABEL).with_context(|| format!("{} is not a valid operator key file", path.display()))?;
    Ok(confab_keys::OperatorKey::from_seed(seed))
}

fn load_or_create_seed(path: &Path, label: &str) -> anyhow::Result<[u8; 32]> {
    match fs::read_to_string(path) {
        Ok(text) => parse_seed(&text, label).with_context(|| format!("{} is not a valid {label} file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed = random_bytes::<32>();
            let text = format!("{label} {}\n", URL_SAFE_NO_PAD.encode(seed));
            write_private(path, text.as_bytes()).with_context(|| format!("cannot create the key file {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated a new {label}");
            Ok(seed)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read the key file {}", path.display())),
    }
}

fn parse_seed(text: &str, label: &str) -> anyhow::Result<[u8; 32]> {
    let encoded = text.trim().strip_prefix(label).map(str::trim).context("unexpected file header")?;
    let bytes = URL_SAFE_NO_PAD.decode(encoded).context("the key is not base64")?;
    bytes.try_into().map_err(|_| anyhow::anyhow!("the key is not 32 bytes"))
}

/// Creates a file readable by its owner only; never overwrites.
fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()?;
    // The new name must survive a power loss too: sync the directory that holds it.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn restrict(path: &Path, mode: u32) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).with_context(|| format!("cannot set permissions on {}", path.display()))?;
    }
    let _ = mode;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_key_is_created_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        let first = data.node_key().unwrap().public();
        assert_eq!(data.node_key().unwrap().public(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("node.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_damaged_key_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("node.key"), "confab-node-key-v1 not!base64\n").unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        assert!(data.node_key().is_err());
    }
}
