//! Offline input: CSV files of `timestamp` + numeric signal columns, read as a stream.

use std::fmt;
use std::path::{Path, PathBuf};

use vigil_features::{SignalSet, SignalSpec};

/// Bad input: names the file, line and column, and what is wrong. The CLI exits with code 2 on these.
#[derive(Debug)]
pub struct InputError {
    /// The file.
    pub file: PathBuf,
    /// The line, where one is at fault.
    pub line: Option<u64>,
    /// The column, where one is at fault.
    pub column: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(c) = &self.column {
            write!(f, ": column `{c}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for InputError {}

impl InputError {
    /// An error about the whole file.
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line: None,
            column: None,
            message: message.into(),
        }
    }
}

pub use vigil_features::time::parse_timestamp;

/// The longest line (header included) a CSV input may have: 1 MiB, about 50,000 numeric columns. A
/// longer one is refused naming its line, so `--csv /dev/zero` or a runaway cell cannot take the
/// machine's memory.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// A reader that fails as soon as a line grows past `cap` bytes (see [`MAX_LINE_BYTES`]).
pub struct LineCap<R> {
    inner: R,
    cap: usize,
    line: u64,
    len: usize,
}

impl<R> LineCap<R> {
    /// `inner`, refusing lines longer than `cap` bytes.
    pub fn new(inner: R, cap: usize) -> Self {
        Self {
            inner,
            cap,
            line: 1,
            len: 0,
        }
    }
}

impl<R: std::io::Read> std::io::Read for LineCap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for b in &buf[..n] {
            if *b == b'\n' {
                self.line += 1;
                self.len = 0;
            } else {
                self.len += 1;
                if self.len > self.cap {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "line {} is longer than {} KiB, the most a CSV line may hold (is this a CSV file?)",
                            self.line,
                            self.cap >> 10
                        ),
                    ));
                }
            }
        }
        Ok(n)
    }
}

/// A cell as error messages quote it: at most 64 characters, then how long it was.
pub fn quoted(cell: &str) -> String {
    const SHOWN: usize = 64;
    match cell.char_indices().nth(SHOWN) {
        None => cell.to_owned(),
        Some((at, _)) => format!("{}… ({} bytes in all)", &cell[..at], cell.len()),
    }
}

/// A CSV reader that ends records at `\n` only, so line numbers are exact for CRLF files too (as
/// Python's csv module writes them); the `\r` left on the last cell is trimmed like other whitespace.
/// Lines are capped at [`MAX_LINE_BYTES`].
pub fn csv_reader<R: std::io::Read>(rdr: R) -> csv::Reader<LineCap<R>> {
    csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_reader(LineCap::new(rdr, MAX_LINE_BYTES))
}

/// Reading options shared by `train`, `score` and `eval`.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct ReadOptions {
    /// Skip rows whose timestamp repeats or goes back (DST repeats, clock steps) instead of refusing the
    /// file; how many were skipped and where is reported on stderr.
    #[arg(long)]
    pub skip_unordered: bool,
}

/// Line numbers of skipped rows kept for the report.
const SKIPPED_SHOWN: usize = 5;

/// The signal a column records, from the vocabulary: the agent's signals (a counter's column is
/// `<signal>_total`) get their unit and kind, so a recording has the agent's feature schema; other
/// columns are counters when named `*_total` (Prometheus convention), else gauges, of unknown scale.
fn spec_for(name: &str) -> SignalSpec {
    vigil_features::vocab::column_signal(name)
}

/// Whether `path` names a gzip'd file (`.gz`, any case): read through a decoder.
pub fn is_gzip(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// `file` as a buffered stream, through a gzip decoder when `path` names a `.gz` file.
pub fn decoded(path: &Path, file: std::fs::File) -> Box<dyn std::io::Read> {
    let buffered = std::io::BufReader::with_capacity(1 << 20, file);
    if is_gzip(path) {
        Box::new(std::io::BufReader::with_capacity(
            1 << 20,
            flate2::read::MultiGzDecoder::new(buffered),
        ))
    } else {
        Box::new(buffered)
    }
}

/// One CSV file (plain, or gzip'd when its name ends in `.gz`) read row by row.
pub struct CsvSource {
    path: PathBuf,
    reader: csv::Reader<LineCap<Box<dyn std::io::Read>>>,
    record: csv::StringRecord,
    columns: Vec<String>,
    signals: SignalSet,
    previous: Option<f64>,
    /// The current row's values, in the order of [`CsvSource::signals`].
    pub values: Vec<f64>,
    /// The current row's time, seconds since the Unix epoch.
    pub timestamp: f64,
    /// The current row's timestamp cell as written.
    pub raw_timestamp: String,
    /// The current row's line in the file.
    pub line: u64,
    size: u64,
    options: ReadOptions,
    skipped: u64,
    skipped_lines: Vec<u64>,
}

impl CsvSource {
    /// Opens a CSV (plain or gzip'd) and reads its header.
    pub fn open(path: &Path, options: ReadOptions) -> Result<Self, InputError> {
        let file = std::fs::File::open(path)
            .map_err(|e| InputError::file(path, format!("cannot open: {e}")))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        // The progress bar of a `.gz` file counts decompressed bytes against the compressed size, so
        // it may run past the end: a hint, not a promise.
        let mut reader = csv_reader(decoded(path, file));
        let headers = reader
            .headers()
            .map_err(|e| InputError::file(path, format!("cannot read the header: {e}")))?;
        if headers.is_empty() || headers.iter().all(str::is_empty) {
            return Err(InputError::file(
                path,
                "the file is empty: expected a header `timestamp,<signal>,...`",
            ));
        }
        // Lines ended by CR alone (classic Mac files) are not line ends to the CSV reader: the whole file
        // reads as one header line. Said as what it is, not as a header that repeats its names.
        if headers.iter().any(|h| h.trim().contains('\r')) {
            return Err(InputError {
                file: path.to_owned(),
                line: Some(1),
                column: None,
                message: "the lines end with a carriage return alone (CR, as classic Mac files); convert them to LF or CRLF, e.g. `tr '\\r' '\\n' < in.csv > out.csv`".into(),
            });
        }
        let columns: Vec<String> = headers.iter().map(|h| h.trim().to_owned()).collect();
        if !columns[0].eq_ignore_ascii_case("timestamp") {
            return Err(InputError {
                file: path.to_owned(),
                line: Some(1),
                column: Some(columns[0].clone()),
                message: "the first column must be `timestamp` (unix seconds, RFC 3339, or YYYY-MM-DD HH:MM:SS UTC)".into(),
            });
        }
        if columns.len() < 2 {
            return Err(InputError::file(
                path,
                "no signal columns after `timestamp`",
            ));
        }
        let header_err = |column: Option<String>, message: String| InputError {
            file: path.to_owned(),
            line: Some(1),
            column,
            message,
        };
        for (i, c) in columns.iter().enumerate().skip(1) {
            if c.is_empty() {
                return Err(header_err(
                    None,
                    format!(
                        "column {} of the header has no name; every signal column needs one",
                        i + 1
                    ),
                ));
            }
            if let Some(first) = columns[..i].iter().position(|o| o == c) {
                return Err(header_err(
                    Some(c.clone()),
                    format!(
                        "the name appears twice in the header (columns {} and {}); column names must be unique",
                        first + 1,
                        i + 1
                    ),
                ));
            }
        }
        let signals =
            SignalSet::new(columns[1..].iter().map(|c| spec_for(c)).collect()).map_err(|m| {
                InputError {
                    file: path.to_owned(),
                    line: Some(1),
                    column: None,
                    message: m.to_string(),
                }
            })?;
        let n = columns.len() - 1;
        Ok(Self {
            path: path.to_owned(),
            reader,
            record: csv::StringRecord::new(),
            columns,
            signals,
            previous: None,
            values: vec![f64::NAN; n],
            timestamp: f64::NAN,
            raw_timestamp: String::new(),
            line: 1,
            size,
            options,
            skipped: 0,
            skipped_lines: Vec::new(),
        })
    }

    /// The file's columns as signals.
    pub fn signals(&self) -> &SignalSet {
        &self.signals
    }

    /// The file's size in bytes (for progress).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes read so far.
    pub fn position(&self) -> u64 {
        self.reader.position().byte()
    }

    fn err(&self, column: Option<usize>, message: impl Into<String>) -> InputError {
        InputError {
            file: self.path.clone(),
            line: Some(self.line),
            column: column.and_then(|c| self.columns.get(c).cloned()),
            message: message.into(),
        }
    }

    /// The names of the signal columns, in order.
    pub fn column_names(&self) -> &[String] {
        &self.columns[1..]
    }

    /// With `--skip-unordered`: how many rows were skipped and where, in words (`None` if none).
    pub fn skipped_report(&self) -> Option<String> {
        (self.skipped > 0).then(|| {
            let mut lines = self
                .skipped_lines
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            if self.skipped > self.skipped_lines.len() as u64 {
                lines.push_str(", ...");
            }
            format!(
                "{}: skipped {} row(s) whose timestamp repeats or goes back (lines {lines})",
                self.path.display(),
                self.skipped
            )
        })
    }

    /// Reads the next row into `timestamp`, `raw_timestamp` and `values`; `false` at the end. With
    /// `--skip-unordered`, rows whose timestamp repeats or goes back are skipped and counted.
    pub fn next_row(&mut self) -> Result<bool, InputError> {
        loop {
            match self.read_one()? {
                Some(true) => return Ok(true),
                Some(false) => {
                    self.skipped += 1;
                    if self.skipped_lines.len() < SKIPPED_SHOWN {
                        self.skipped_lines.push(self.line);
                    }
                }
                None => return Ok(false),
            }
        }
    }

    /// One row: `Some(true)` read, `Some(false)` skipped (out of order), `None` at the end.
    fn read_one(&mut self) -> Result<Option<bool>, InputError> {
        match self.reader.read_record(&mut self.record) {
            Ok(false) => return Ok(None),
            Ok(true) => {}
            Err(e) => {
                self.line = e.position().map_or(self.line + 1, |p| p.line());
                return Err(self.err(None, format!("malformed CSV: {e}")));
            }
        }
        self.line = self.record.position().map_or(self.line + 1, |p| p.line());
        let ts_raw = self.record.get(0).unwrap_or("");
        let Some(ts) = parse_timestamp(ts_raw) else {
            return Err(self.err(
                Some(0),
                format!(
                    "`{}` is not a timestamp (unix seconds, RFC 3339, or YYYY-MM-DD HH:MM:SS)",
                    quoted(ts_raw)
                ),
            ));
        };
        if let Some(why) = vigil_features::time::out_of_range(ts) {
            return Err(self.err(Some(0), format!("timestamp {why}")));
        }
        if let Some(prev) = self.previous {
            if ts <= prev && self.options.skip_unordered {
                return Ok(Some(false));
            }
            if ts == prev {
                return Err(self.err(
                    Some(0),
                    format!(
                        "duplicate timestamp `{}`; pass --skip-unordered to skip such rows",
                        quoted(ts_raw)
                    ),
                ));
            }
            if ts < prev {
                return Err(self.err(
                    Some(0),
                    format!(
                        "timestamp `{}` is earlier than the row before; sort the file by time, or pass --skip-unordered to skip such rows", quoted(ts_raw)
                    ),
                ));
            }
        }
        self.previous = Some(ts);
        self.timestamp = ts;
        self.raw_timestamp.clear();
        self.raw_timestamp.push_str(ts_raw);
        for i in 0..self.values.len() {
            let cell = self.record.get(i + 1).unwrap_or("").trim();
            let v = if cell.is_empty() || cell.eq_ignore_ascii_case("nan") {
                f64::NAN
            } else {
                match cell.parse::<f64>() {
                        Ok(v) if v.is_finite() && v.abs() > MAX_VALUE => return Err(self.err(
                            Some(i + 1),
                            format!(
                                "values this large overflow the window statistics (`{}` is beyond \
                                 ±{MAX_VALUE:e}, where squares are infinite); rescale the column \
                                 (e.g. bytes to GiB)",
                                quoted(cell)
                            ),
                        )),
                        Ok(v) if v.is_finite() => v,
                        // One rule: an empty cell or `NaN` (as pandas and Prometheus write a gap) is a
                        // missing value; an infinity is a value no statistic can use.
                        Ok(_) => return Err(self.err(
                            Some(i + 1),
                            format!(
                                "`{}` is infinite; values must be finite (an empty cell or NaN is a missing value)",
                                quoted(cell)
                            ),
                        )),
                        Err(_) => return Err(self.err(
                            Some(i + 1),
                            format!(
                                "`{}` is not a number (an empty cell or NaN is a missing value)",
                                quoted(cell)
                            ),
                        )),
                    }
            };
            self.values[i] = v;
        }
        Ok(Some(true))
    }
}

/// The largest magnitude a CSV value may have: the window statistics square values (a spread), and
/// squares of values beyond this overflow `f64`. Refused on the value's own line, not on the line where
/// the first window that holds it fills.
pub const MAX_VALUE: f64 = 1e150;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_every_documented_form() {
        assert_eq!(parse_timestamp("1700000000"), Some(1_700_000_000.0));
        assert_eq!(parse_timestamp("1700000000.5"), Some(1_700_000_000.5));
        assert_eq!(
            parse_timestamp("2023-11-14T22:13:20Z"),
            Some(1_700_000_000.0)
        );
        assert_eq!(
            parse_timestamp("2023-11-14 22:13:20"),
            Some(1_700_000_000.0)
        );
        assert_eq!(
            parse_timestamp("2023-11-14T23:13:20+01:00"),
            Some(1_700_000_000.0)
        );
        assert_eq!(
            parse_timestamp("2023-11-14T22:13:20.250Z"),
            Some(1_700_000_000.25)
        );
        // Leap days exist where the calendar has them.
        assert!(parse_timestamp("2024-02-29 00:00:00").is_some());
        assert!(parse_timestamp("2000-02-29 00:00:00").is_some());
        assert_eq!(parse_timestamp("1900-02-29 00:00:00"), None);
        assert!(parse_timestamp("2023-11-14T22:13:20-23:59").is_some());
        for bad in [
            "",
            "yesterday",
            "2023-13-01 00:00:00",
            "2023-11-14T22:13:20 PST",
            "inf",
            "2023-02-30 00:00:00",
            "2023-02-29T00:00:00Z",
            "2023-04-31 12:00:00",
            "2023-11-14T22:13:20+99:99",
            "2023-11-14T22:13:20+24:00",
            "2023-11-14T22:13:20-05:60",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }
}
