//! What the `vigil` command's subcommands and its harness share: reading CSV and label files
//! ([`input`], [`labels`]), the online engine run over rows ([`engine`]), a bounded HTTP/1.1 client
//! ([`http`]), the score-over-time plots ([`plot`], [`png`]), and writing to standard output without
//! panicking on a closed pipe ([`say!`]). Not linked by hosts.

pub mod engine;
pub mod http;
pub mod input;
pub mod labels;
pub mod plot;
pub mod png;

/// A bad value given on the command line (a flag's value that cannot be used): exit code 2, like bad
/// input files.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Writes one line to standard output. A closed pipe (`vigil inspect m.json | head`) comes back as an
/// error that `main` turns into a quiet exit, never a panic as `println!` would.
pub fn say_line(args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)?;
    out.write_all(b"\n")
}

/// `say!("...", args)`: [`say_line`] with `format!` syntax.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::say_line(format_args!($($arg)*))
    };
}
