//! Standard output that its reader may close early (`pipeline ps | head -1`, `pipeline compare | less` quit at
//! once): the program then ends quietly, as `cat` does, instead of panicking inside `println!`. Any other failure
//! to write (a full disk behind `> file`) is an error on stderr and exit code 3 (as a full disk anywhere), never a panic.

use std::io::Write;

/// Writes `args` to stdout; on a closed pipe exits 0 at once, on any other error reports it and exits 3.
pub fn write(args: std::fmt::Arguments) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(i32::from(crate::exit::SUCCESS));
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(i32::from(crate::exit::ENVIRONMENT));
    }
}

/// `print!` through [`write`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::stdout::write(format_args!($($arg)*)) };
}

/// `println!` through [`write`].
macro_rules! outln {
    () => { $crate::cli::stdout::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::cli::stdout::write(format_args!("{}\n", format_args!($($arg)*))) };
}
