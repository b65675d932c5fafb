//! How long each test took, for the list of the slowest that `tests/run.sh` prints at the
//! end. libtest runs each test on a thread named after it; the first node or browser lock a
//! test takes starts its clock (on that thread), and the thread's end stops it, whether the
//! test passed or panicked. Only where `CONFAB_TEST_TIMES` names a file: each test appends
//! one line to it, seconds and name, tab-separated.

use std::cell::RefCell;
use std::io::Write;
use std::time::Instant;

struct Clock {
    name: String,
    since: Instant,
}

impl Drop for Clock {
    fn drop(&mut self) {
        let Ok(path) = std::env::var("CONFAB_TEST_TIMES") else { return };
        let line = format!("{:.1}\t{}\n", self.since.elapsed().as_secs_f64(), self.name);
        // One short append: lines from tests ending at once do not mix.
        if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = file.write_all(line.as_bytes());
        }
    }
}

thread_local! {
    static CLOCK: RefCell<Option<Clock>> = const { RefCell::new(None) };
}

/// Starts the calling test's clock, unless it runs already (or this is no test's thread).
pub fn mark() {
    let thread = std::thread::current();
    let Some(name) = thread.name().filter(|n| *n != "main" && !n.starts_with("tokio-")) else { return };
    let _ = CLOCK.try_with(|clock| {
        let mut clock = clock.borrow_mut();
        if clock.is_none() {
            *clock = Some(Clock { name: name.to_string(), since: Instant::now() });
        }
    });
}
