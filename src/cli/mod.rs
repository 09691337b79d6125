//! Subcommands of the `vigil` binary.

pub(crate) mod bench;
pub(crate) mod corpus;
pub(crate) mod demo;
pub(crate) mod eval;
pub(crate) mod feedback;
pub(crate) mod gpucheck;
pub(crate) mod http;
pub(crate) mod input;
pub(crate) mod inspect;
pub(crate) mod joint;
pub(crate) mod labels;
pub(crate) mod memory;
pub(crate) mod offline;
pub(crate) mod overhead;
pub(crate) mod png;
pub(crate) mod pull;
pub(crate) mod scenes;
pub(crate) mod score;
pub(crate) mod soak;
pub(crate) mod store;
pub(crate) mod train;

/// A bad value given on the command line (a flag's value that cannot be used): exit code 2, like bad
/// input files.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Writes one line to standard output. A closed pipe (`vigil inspect m.json | head`) comes back as an
/// error that `main` turns into a quiet exit, never a panic as `println!` would.
pub(crate) fn say_line(args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)?;
    out.write_all(b"\n")
}

/// `say!("...", args)`: [`say_line`] with `format!` syntax.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::say_line(format_args!($($arg)*))
    };
}
pub(crate) use say;
