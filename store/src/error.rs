//! Store errors: each names the file and says what to do.

use std::path::{Path, PathBuf};

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file system refused.
    #[error("{}: {message}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong and what to do.
        message: String,
    },
    /// SQLite refused.
    #[error("{}: {message}", path.display())]
    Db {
        /// The database file.
        path: PathBuf,
        /// SQLite's message, with advice where there is some.
        message: String,
    },
    /// The database was written by a newer Vigil.
    #[error(
        "{}: written by a newer Vigil (store schema {found}, this build reads up to {supported}); \
         upgrade, or point VIGIL_DATA_DIR elsewhere",
        path.display()
    )]
    Version {
        /// The database file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest this build reads.
        supported: i64,
    },
    /// A value is not acceptable (nothing was stored).
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    pub(crate) fn open(path: &Path, e: rusqlite::Error) -> Self {
        Self::Db {
            path: path.to_owned(),
            message: format!(
                "cannot open the store: {e} (check that the directory is writable and on a local \
                 disk: SQLite's WAL needs shared memory)"
            ),
        }
    }

    pub(crate) fn db(path: &Path, e: rusqlite::Error) -> Self {
        let advice = match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => {
                " (the disk is full: free space or lower VIGIL_RETENTION_SIZE)"
            }
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                " (another process holds the store: one agent per VIGIL_DATA_DIR)"
            }
            Some(rusqlite::ErrorCode::ReadOnly) => " (the store is read-only here)",
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
                " (the file is damaged or not a Vigil store: move it aside)"
            }
            _ => "",
        };
        Self::Db {
            path: path.to_owned(),
            message: format!("{e}{advice}"),
        }
    }

    pub(crate) fn json(e: serde_json::Error) -> Self {
        Self::Invalid(format!("cannot encode as JSON: {e}"))
    }
}
