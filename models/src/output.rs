//! Writing a file a user named, without ever destroying anything else.
//!
//! Every output of Vigil (model files, score CSVs, plots) goes through [`OutputFile`]:
//!
//! - An output that is one of the inputs (same file, through any path, symlink or hard link) is refused
//!   before anything is written.
//! - A regular file (or a new one) is written to a fresh temporary file in the same directory, flushed to
//!   disk and renamed over the target, so a crash leaves the old file or the new one, never half of one.
//!   The temporary file is created with `O_EXCL` under a name no user file can take from us
//!   (`.NAME.vigil-PID-N.tmp`; an existing file of that name is skipped, never overwritten), and only the
//!   file this writer created is ever removed.
//! - A symlink is followed: its target is replaced, the link stays a link.
//! - An existing non-regular file (a device such as `/dev/full` or `/dev/null`, a FIFO, a terminal, a pipe
//!   reached through `/proc/self/fd/1`) is written through in place, never replaced by a regular file.
//! - A directory is refused.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Symlink hops followed before giving up (the kernel's own limit is 40).
const MAX_LINK_HOPS: usize = 40;

/// Why an output cannot be written. The message names the path and says what to do.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct OutputError {
    /// The output path as the user gave it.
    pub path: PathBuf,
    /// What is wrong and what to do.
    pub message: String,
    /// The operating system's reason, when there is one.
    #[source]
    pub source: Option<io::Error>,
}

impl OutputError {
    fn new(path: &Path, message: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            message: message.into(),
            source: None,
        }
    }

    fn io(path: &Path, what: &str, source: io::Error) -> Self {
        // The OS reason follows as the error's source (`{:#}` and error reporters print it).
        let hint = match source.kind() {
            io::ErrorKind::NotFound => " (does the directory exist?)",
            io::ErrorKind::PermissionDenied => {
                " (check the permissions of the file and its directory)"
            }
            _ => "",
        };
        Self {
            path: path.to_owned(),
            message: format!("{what}{hint}"),
            source: Some(source),
        }
    }
}

/// How the output will be written.
#[derive(Debug)]
enum Mode {
    /// Temporary file `tmp` beside `target`, renamed over it on commit.
    Replace { target: PathBuf, tmp: PathBuf },
    /// Written in place (device, FIFO, terminal, pipe).
    Through,
}

/// An output file being written; [`OutputFile::commit`] makes it visible. Dropped without a commit, the
/// temporary file is removed and the target is untouched.
#[derive(Debug)]
#[must_use = "an OutputFile is discarded unless `commit` is called"]
pub struct OutputFile {
    shown: PathBuf,
    file: File,
    mode: Mode,
    committed: bool,
}

/// Identity of a file: device and inode on Unix, the canonical path elsewhere.
#[cfg(unix)]
fn identity(meta: &std::fs::Metadata, _path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn identity(_meta: &std::fs::Metadata, path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

/// Follows `path` through symlinks to the path that would be created or replaced (the link itself is
/// kept). Returns the final path, which may not exist yet.
fn resolve_links(path: &Path) -> Result<PathBuf, OutputError> {
    let mut p = path.to_owned();
    for _ in 0..MAX_LINK_HOPS {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&p)
                    .map_err(|e| OutputError::io(path, "cannot read the symlink", e))?;
                p = if target.is_absolute() {
                    target
                } else {
                    p.parent().unwrap_or_else(|| Path::new(".")).join(target)
                };
            }
            _ => return Ok(p),
        }
    }
    Err(OutputError::new(
        path,
        format!("more than {MAX_LINK_HOPS} symlinks to follow (a symlink loop?)"),
    ))
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The files a Vigil data directory's store owns (the SQLite database and its journals, and the
/// agent's lock): no command's output may replace one of them, whatever path or link leads there.
pub const STORE_FILE_NAMES: [&str; 5] = [
    "vigil.db",
    "vigil.db-wal",
    "vigil.db-shm",
    "vigil.db-journal",
    "LOCK",
];

/// Refuses `target` (links already followed) when it is one of the files a store owns in a Vigil data
/// directory (a directory holding `vigil.db`), however it is spelled.
fn refuse_store_file(out: &Path, target: &Path) -> Result<(), OutputError> {
    let Some(name) = target.file_name().and_then(|n| n.to_str()) else {
        return Ok(());
    };
    if !STORE_FILE_NAMES.contains(&name) {
        return Ok(());
    }
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if dir.join(STORE_FILE_NAMES[0]).exists() {
        let shown = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
        return Err(OutputError::new(
            out,
            format!(
                "is `{name}`, a file of the Vigil store in {}; writing there would destroy stored \
                 labels, windows and events (or let a second agent start on the directory): choose \
                 an output path outside the store's files",
                shown.display()
            ),
        ));
    }
    Ok(())
}

impl OutputFile {
    /// Prepares `out` for writing. `inputs` are the files the command reads: naming one of them as the
    /// output is refused (compared by file identity, so other spellings, symlinks and hard links are
    /// caught too). Call it before reading the inputs, so a mistake costs nothing.
    pub fn create(out: &Path, inputs: &[&Path]) -> Result<Self, OutputError> {
        // `metadata` follows symlinks, including /proc's magic links to pipes and terminals.
        let existing = match std::fs::metadata(out) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(OutputError::io(out, "cannot inspect the output", e)),
        };
        if let Some(meta) = &existing {
            let id = identity(meta, out);
            for input in inputs {
                if let Ok(im) = std::fs::metadata(input)
                    && identity(&im, input) == id
                {
                    return Err(OutputError::new(
                        out,
                        format!(
                            "is the same file as the input {}; refusing to overwrite an input: choose another output path",
                            input.display()
                        ),
                    ));
                }
            }
            if meta.is_dir() {
                return Err(OutputError::new(
                    out,
                    "is a directory; give a file path for the output",
                ));
            }
            if !meta.is_file() {
                // A device, FIFO, socket or terminal: write into it, never replace the node.
                let file = OpenOptions::new()
                    .write(true)
                    .open(out)
                    .map_err(|e| OutputError::io(out, "cannot open for writing", e))?;
                return Ok(Self {
                    shown: out.to_owned(),
                    file,
                    mode: Mode::Through,
                    committed: false,
                });
            }
        }
        let target = resolve_links(out)?;
        refuse_store_file(out, &target)?;
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = target
            .file_name()
            .ok_or_else(|| {
                OutputError::new(out, "has no file name; give a file path for the output")
            })?
            .to_string_lossy()
            .into_owned();
        let permissions = existing.as_ref().map(std::fs::Metadata::permissions);
        let pid = std::process::id();
        for _ in 0..1000 {
            let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let tmp = dir.join(format!(".{name}.vigil-{pid}-{n}.tmp"));
            match OpenOptions::new().write(true).create_new(true).open(&tmp) {
                Ok(file) => {
                    if let Some(p) = &permissions {
                        // Best effort: the replaced file keeps its mode.
                        let _ = file.set_permissions(p.clone());
                    }
                    return Ok(Self {
                        shown: out.to_owned(),
                        file,
                        mode: Mode::Replace { target, tmp },
                        committed: false,
                    });
                }
                // Someone else's file of that name: leave it alone, take the next name.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(OutputError::io(
                        out,
                        &format!("cannot create a temporary file in {}", dir.display()),
                        e,
                    ));
                }
            }
        }
        Err(OutputError::new(
            out,
            format!(
                "cannot find a free temporary file name in {}",
                dir.display()
            ),
        ))
    }

    /// Writes a whole document and commits it.
    pub fn write_all_and_commit(
        out: &Path,
        inputs: &[&Path],
        bytes: &[u8],
    ) -> Result<(), OutputError> {
        let mut f = Self::create(out, inputs)?;
        f.write_all(bytes)
            .map_err(|e| OutputError::io(out, "cannot write", e))?;
        f.commit()
    }

    /// The output path as given.
    pub fn path(&self) -> &Path {
        &self.shown
    }

    /// Flushes to disk and makes the file visible under its name (rename over the target), or, for a
    /// device or pipe, just flushes.
    pub fn commit(mut self) -> Result<(), OutputError> {
        let shown = self.shown.clone();
        self.file
            .flush()
            .map_err(|e| OutputError::io(&shown, "cannot write", e))?;
        match &self.mode {
            Mode::Through => {
                // fsync is meaningless (EINVAL) on pipes and many devices; what was written is written.
                let _ = self.file.sync_all();
            }
            Mode::Replace { target, tmp } => {
                self.file
                    .sync_all()
                    .map_err(|e| OutputError::io(&shown, "cannot write to disk", e))?;
                std::fs::rename(tmp, target).map_err(|e| {
                    OutputError::io(&shown, "cannot move the finished file into place", e)
                })?;
                // Make the rename itself durable (best effort: not every filesystem allows it).
                if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty())
                    && let Ok(d) = File::open(dir)
                {
                    let _ = d.sync_all();
                }
            }
        }
        self.committed = true;
        Ok(())
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if !self.committed
            && let Mode::Replace { tmp, .. } = &self.mode
        {
            // Only the file this writer created with O_EXCL.
            let _ = std::fs::remove_file(tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vigil-output-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn files_in(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_new_file_appears_only_on_commit_and_nothing_else_is_left() {
        let d = dir("new");
        let out = d.join("model.json");
        let mut f = OutputFile::create(&out, &[]).unwrap();
        f.write_all(b"hello").unwrap();
        assert!(!out.exists(), "visible before commit");
        f.commit().unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"hello");
        assert_eq!(files_in(&d), vec!["model.json"]);
    }

    #[test]
    fn dropping_without_commit_keeps_the_old_file_and_removes_only_our_temporary() {
        let d = dir("drop");
        let out = d.join("scores.csv");
        std::fs::write(&out, "old").unwrap();
        // Files a user might have, named like old temporary schemes.
        std::fs::write(d.join("scores.partial"), "user data").unwrap();
        std::fs::write(d.join("scores.tmp-vigil"), "user data").unwrap();
        let mut f = OutputFile::create(&out, &[]).unwrap();
        f.write_all(b"new").unwrap();
        drop(f);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "old");
        assert_eq!(
            files_in(&d),
            vec!["scores.csv", "scores.partial", "scores.tmp-vigil"]
        );
    }

    #[test]
    fn an_output_that_is_an_input_is_refused_by_any_path() {
        let d = dir("same");
        let input = d.join("in.csv");
        std::fs::write(&input, "timestamp,x\n").unwrap();
        let other_spelling = d.join(".").join("in.csv");
        let link = d.join("link.csv");
        std::os::unix::fs::symlink(&input, &link).unwrap();
        let hard = d.join("hard.csv");
        std::fs::hard_link(&input, &hard).unwrap();
        for out in [&input, &other_spelling, &link, &hard] {
            let err = OutputFile::create(out, &[&input]).unwrap_err();
            assert!(err.to_string().contains("same file as the input"), "{err}");
        }
        assert_eq!(std::fs::read_to_string(&input).unwrap(), "timestamp,x\n");
    }

    #[test]
    fn a_symlink_stays_a_link_and_its_target_gets_the_content() {
        let d = dir("link");
        let target = d.join("real.json");
        std::fs::write(&target, "old").unwrap();
        let link = d.join("current.json");
        std::os::unix::fs::symlink("real.json", &link).unwrap();
        OutputFile::write_all_and_commit(&link, &[], b"new").unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        // A dangling link: the file is created where it points.
        let dangling = d.join("next.json");
        std::os::unix::fs::symlink("future.json", &dangling).unwrap();
        OutputFile::write_all_and_commit(&dangling, &[], b"x").unwrap();
        assert!(
            std::fs::symlink_metadata(&dangling)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(d.join("future.json")).unwrap(), "x");
    }

    #[test]
    fn devices_are_written_through_never_replaced() {
        let before = std::fs::symlink_metadata("/dev/null").unwrap();
        OutputFile::write_all_and_commit(Path::new("/dev/null"), &[], b"discarded").unwrap();
        let after = std::fs::symlink_metadata("/dev/null").unwrap();
        assert!(!after.is_file());
        assert_eq!(
            identity(&before, Path::new("")),
            identity(&after, Path::new(""))
        );
        if Path::new("/dev/full").exists() {
            let err =
                OutputFile::write_all_and_commit(Path::new("/dev/full"), &[], &[0u8; 1 << 16])
                    .unwrap_err();
            assert!(err.to_string().contains("/dev/full"), "{err}");
            assert!(!std::fs::metadata("/dev/full").unwrap().is_file());
        }
    }

    #[test]
    fn directories_and_missing_directories_are_clear_errors() {
        let d = dir("dirs");
        let err = OutputFile::create(&d, &[]).unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");
        let err = OutputFile::create(&d.join("missing/out.csv"), &[]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("missing/out.csv") && msg.contains("does the directory exist"),
            "{msg}"
        );
        assert_eq!(
            err.source.as_ref().map(io::Error::kind),
            Some(io::ErrorKind::NotFound)
        );
    }
}
