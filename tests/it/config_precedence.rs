//! Settings come from flags, then `CONFAB_*` variables, then the TOML file, then defaults;
//! `--help` documents each default; a bad file is refused with a clear message.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use confab_tests::node::confab_bin;

/// Starts `confab serve` with `args` and `env`, returns its banner line, stops it.
fn banner(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(confab_bin());
    // The relay announced on loopback: without it the node would probe its default route and
    // announce this machine's own address.
    cmd.current_dir(dir).arg("serve").args(args).args(["--listen", "127.0.0.1:0", "--relay-ip", "127.0.0.1", "--log", "warn"]);
    cmd.env_remove("CONFAB_PUBLIC_URL").env_remove("CONFAB_CONFIG").env_remove("CONFAB_DATA_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let line =
        BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok).find(|l| l.contains(" is serving ")).expect("confab printed no banner");
    child.kill().unwrap();
    child.wait().unwrap();
    line
}

#[test]
fn flag_beats_env_beats_file_beats_default() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let data = dir.join("from-file-data");
    std::fs::write(dir.join("confab.toml"), format!("public_url = \"https://from-file.example\"\ndata_dir = \"{}\"\n", data.display())).unwrap();

    // ./confab.toml is read when present; its data_dir is used.
    let line = banner(dir, &[], &[]);
    assert!(line.contains("serving https://from-file.example "), "{line}");
    assert!(data.join("node.key").exists(), "the file's data_dir was used");

    let line = banner(dir, &[], &[("CONFAB_PUBLIC_URL", "https://from-env.example")]);
    assert!(line.contains("serving https://from-env.example "), "{line}");

    let line = banner(dir, &["--public-url", "https://from-flag.example"], &[("CONFAB_PUBLIC_URL", "https://from-env.example")]);
    assert!(line.contains("serving https://from-flag.example "), "{line}");

    // With no file at all: the default, built from the port.
    let empty = tempfile::tempdir().unwrap();
    let line = banner(empty.path(), &[], &[]);
    assert!(line.contains("serving https://localhost:"), "{line}");
    assert!(empty.path().join("confab-data/confab.sqlite3").exists(), "default data directory");
}

#[test]
fn bad_configuration_is_refused_clearly() {
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("bad.toml");
    std::fs::write(&file, "lisen = \"0.0.0.0:443\"\n").unwrap();
    let out = Command::new(confab_bin()).args(["serve", "--config"]).arg(&file).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not valid") && err.contains("lisen"), "{err}");

    let out = Command::new(confab_bin()).args(["serve", "--public-url", "http://insecure.example"]).current_dir(temp.path()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must start with https://"));

    let out = Command::new(confab_bin()).args(["serve", "--tls-cert", "x.pem"]).current_dir(temp.path()).output().unwrap();
    assert!(!out.status.success(), "a certificate without its key is refused");
}

#[test]
fn help_documents_every_option_and_default() {
    let out = Command::new(confab_bin()).args(["serve", "--help"]).output().unwrap();
    // clap wraps lines to the terminal width: compare with white space collapsed.
    let help = String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" ");
    for expected in [
        "--listen",
        "[default: 127.0.0.1:8443]",
        "CONFAB_LISTEN",
        "--data-dir",
        "[default: ./confab-data]",
        "--public-url",
        "--tls-cert",
        "--tls-key",
        "--first-token-ttl",
        "[default: 24h]",
        "--log-format",
        "--config",
    ] {
        assert!(help.contains(expected), "serve --help lacks {expected:?}:\n{help}");
    }
}
