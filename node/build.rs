// The web client is embedded at compile time (rust-embed): rebuild when any of its files
// change, including files added or removed, which rust-embed alone does not tell cargo.
fn main() {
    println!("cargo:rerun-if-changed=../web-client");
}
