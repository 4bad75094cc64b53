//! Ctrl-C (and SIGTERM): a flag that the executor and long-running stages poll, so a run stops between units of
//! work (a file, a training batch) with everything finished so far cached, and exits 130. A second Ctrl-C exits at
//! once; that is safe too, because cache entries and training checkpoints are only ever renamed into place whole.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// The error a stage returns when it stopped because of Ctrl-C.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// Installs the handler, before the work starts; a second call (an export after a run) changes nothing.
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(install_handler);
}

fn install_handler() {
    let handler = || {
        if REQUESTED.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: quitting now");
            std::process::exit(i32::from(crate::exit::INTERRUPTED));
        }
        eprintln!("\ninterrupted: stopping after the current step (Ctrl-C again to quit at once)");
    };
    if let Err(e) = ctrlc::set_handler(handler) {
        eprintln!("warning: Ctrl-C will stop the run abruptly: {e}");
    }
}

/// Whether the user asked the run to stop.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// `Err(Interrupted)` once the user asked the run to stop.
pub fn check() -> Result<(), Interrupted> {
    if requested() {
        Err(Interrupted)
    } else {
        Ok(())
    }
}
