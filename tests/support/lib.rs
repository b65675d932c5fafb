//! Shared helpers for the integration tests: start the real `confab` binary on a free port in
//! a temporary data directory, talk to it over real HTTPS, and drive real browsers.

pub mod browser;
pub mod cluster;
pub mod conditions;
pub mod impair;
pub mod meeting;
pub mod native;
pub mod netns;
pub mod node;
pub mod signaling;
pub mod timing;
pub mod turn;

pub use node::{Node, client};

/// Polls `check` every 50 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_or(what, timeout, || {
        let next = check();
        async move { next.await.ok_or_else(|| "not yet".to_string()) }
    })
    .await
}

/// Like [`eventually`], but `check` says what it saw when it is not satisfied (`Err`), and the
/// panic after `timeout` quotes the last of those.
pub async fn eventually_or<T, F, Fut>(what: &str, timeout: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) if std::time::Instant::now() > deadline => panic!("timed out after {timeout:?} waiting for {what}; last seen: {seen}"),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}
