//! Vigil's local store: per-tick samples, feature windows and scores, anomaly events, labels and model
//! history in one SQLite file (`vigil.db`, WAL) under a data directory.
//!
//! - **Crash-safe**: every write is a transaction with `synchronous = FULL`; a write that returned `Ok`
//!   survives the process being killed (and a power cut). An interrupted transaction leaves nothing.
//! - **Readable while written**: WAL lets the CLI read while the agent writes.
//! - **Bounded**: [`Store::enforce_retention`] deletes ticks and events older than an age and the
//!   oldest ticks beyond a size; labels are what people and alerts told us and are never deleted by
//!   retention; model history keeps the newest [`MODELS_KEPT`].
//!
//! The store is synchronous; the agent owns it on its own thread (`vigil-store`) behind a bounded
//! channel, so the tick and the HTTP server never wait on the disk.

mod alertmanager;
mod error;
mod labels;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;
use vigil_models::{AnomalyKind, Event};

pub use alertmanager::{AlertOutcome, MAX_ALERTS, Webhook, WebhookAlert};
pub use error::StoreError;
pub use labels::{Confidence, LabelQuery, MAX_NOTE_BYTES, NewLabel, StoredLabel, Verdict};

/// The database file inside the data directory.
pub const DB_FILE: &str = "vigil.db";
/// Model history entries kept (the newest).
pub const MODELS_KEPT: usize = 20;
/// CPU profiles kept at most (the newest; each is tens of KiB).
pub const PROFILES_KEPT: usize = 50;
/// Schema version of the database (`PRAGMA user_version`). Added tables (`CREATE TABLE IF NOT
/// EXISTS`, which older agents ignore) keep the version; changed columns raise it.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS schemas (
    hash TEXT PRIMARY KEY,
    columns TEXT NOT NULL,
    features TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ticks (
    t REAL PRIMARY KEY,
    schema TEXT NOT NULL,
    sample BLOB NOT NULL,
    features BLOB,
    score REAL,
    raw REAL,
    event_id INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    start REAL NOT NULL,
    opened REAL NOT NULL,
    end_t REAL,
    ended TEXT,
    peak REAL NOT NULL,
    peak_at REAL NOT NULL,
    anomaly_type TEXT NOT NULL,
    opened_as TEXT NOT NULL,
    top_features TEXT NOT NULL,
    windows INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_start ON events(start);
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    start REAL NOT NULL,
    end_t REAL,
    label TEXT NOT NULL CHECK (label IN ('anomaly', 'normal')),
    anomaly_type TEXT,
    source TEXT NOT NULL,
    confidence REAL NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
    note TEXT,
    event_id INTEGER,
    fingerprint TEXT,
    created REAL NOT NULL,
    UNIQUE (fingerprint, start)
);
CREATE INDEX IF NOT EXISTS labels_start ON labels(start);
CREATE TABLE IF NOT EXISTS models (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL,
    figures TEXT NOT NULL,
    model TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS profiles (
    event_id INTEGER PRIMARY KEY,
    started REAL NOT NULL,
    seconds REAL NOT NULL,
    hz INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    pprof BLOB NOT NULL
);
";

/// The feature schema of stored ticks: the sample's column names (as `vigil train --csv` reads them)
/// and the feature names, under the schema hash.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaInfo {
    /// `FeatureSchema::hash`, as 16 hex digits.
    pub hash: String,
    /// CSV column names of the sample's signals, in order.
    pub columns: Vec<String>,
    /// Feature names, in order.
    pub features: Vec<String>,
}

/// One tick as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TickRecord {
    /// Sample time, Unix seconds.
    pub t: f64,
    /// Schema hash (see [`SchemaInfo`]); registered with [`Store::register_schema`] first.
    pub schema: String,
    /// Raw signal values (`NaN` = missing).
    pub sample: Vec<f64>,
    /// The window's features, once the window is warm.
    pub features: Option<Vec<f64>>,
    /// Calibrated score, once a model scores.
    pub score: Option<f64>,
    /// Raw score.
    pub raw: Option<f64>,
    /// The event open on this tick.
    pub event_id: Option<u64>,
}

/// A write the agent batches into one transaction.
#[derive(Debug, Clone)]
pub enum Write {
    /// A tick.
    Tick(TickRecord),
    /// An event opened, retyped or closed (stored by id; the newest state wins).
    Event(Event),
    /// The CPU profile taken when an event opened (one per event; a second replaces it).
    Profile(ProfileRecord),
}

/// A CPU profile kept with an event.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileRecord {
    /// The event it belongs to.
    pub event_id: u64,
    /// When sampling began, Unix seconds.
    pub started: f64,
    /// How long it sampled.
    pub seconds: f64,
    /// Sampling frequency.
    pub hz: u32,
    /// Stack samples in it.
    pub samples: u64,
    /// The gzip'd pprof protobuf, as `GET /debug/pprof/profile` serves it.
    pub pprof: Vec<u8>,
}

/// What one [`Store::write_batch`] stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Ticks stored.
    pub ticks: usize,
    /// Ticks ignored because a tick with the same time was already stored (a clock that went back).
    pub duplicate_ticks: usize,
    /// Event states stored.
    pub events: usize,
    /// Profiles stored.
    pub profiles: usize,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    /// Event id (unique within the data directory).
    pub id: u64,
    /// RFC 3339 times.
    pub start: String,
    /// When it was declared open.
    pub opened: String,
    /// Last window inside it; `None` while open.
    pub end: Option<String>,
    /// `settled` or `level_shift` (`rebaselined` in stores written before 0.1 named it so); `None`
    /// while open.
    pub ended: Option<String>,
    /// Peak score and when.
    pub peak: f64,
    /// When the peak was seen.
    pub peak_at: String,
    /// Its type (follows the peak window).
    pub anomaly_type: String,
    /// The type it opened with.
    pub opened_as: String,
    /// Top features of the peak window: `[name, deviation]`.
    pub top_features: Vec<(String, f64)>,
    /// Windows inside it.
    pub windows: u64,
    /// A CPU profile was kept with it (`GET /api/v1/events/{id}/profile`).
    pub profile: bool,
    /// Unix seconds of `start` and `end` (for joins with windows).
    #[serde(skip)]
    pub start_unix: f64,
    /// Unix seconds of the end; `None` while open.
    #[serde(skip)]
    pub end_unix: Option<f64>,
}

/// A stored model and why it was kept.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredModel {
    /// Id (increasing).
    pub id: i64,
    /// When it was stored, RFC 3339.
    pub created: String,
    /// `promoted`, `rejected`, `failed`, `loaded`, `rollback`, ...
    pub outcome: String,
    /// Why it was trained.
    pub reason: String,
    /// The figures the decision was made on (JSON).
    pub figures: serde_json::Value,
}

/// Size and contents.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StoreStats {
    /// Bytes in use (pages in use × page size).
    pub bytes: u64,
    /// Stored ticks.
    pub ticks: u64,
    /// Stored events.
    pub events: u64,
    /// Stored labels.
    pub labels: u64,
    /// Oldest and newest tick time (Unix seconds).
    pub first_tick: Option<f64>,
    /// Newest tick time.
    pub last_tick: Option<f64>,
}

/// What [`Store::enforce_retention`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Ticks deleted for age or size.
    pub ticks: u64,
    /// Events deleted for age.
    pub events: u64,
    /// Model history entries beyond [`MODELS_KEPT`].
    pub models: u64,
    /// Profiles whose event was deleted, or beyond [`PROFILES_KEPT`].
    pub profiles: u64,
}

/// The store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// Little-endian `f64`s.
fn to_blob(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A stored window as a retrain reads it: `(time, features, inside an event)`.
pub type StoredWindow = (f64, std::sync::Arc<[f64]>, bool);

/// What [`Store::retrain_input`] reads: the windows and the labels over them.
pub type RetrainRead = (Vec<StoredWindow>, Vec<vigil_models::labels::Label>);

fn from_blob<C: FromIterator<f64>>(b: &[u8]) -> C {
    b.chunks_exact(8)
        .map(|c| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            f64::from_le_bytes(a)
        })
        .collect()
}

fn fmt_t(t: f64) -> String {
    vigil_features::time::format_rfc3339(t)
}

impl Store {
    /// Opens (creating it and the directory if needed) the store in `dir` for reading and writing.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let store = Self::open_unchecked(dir)?;
        store.quick_check()?;
        Ok(store)
    }

    /// [`Store::open`] without its integrity check, which reads the whole file (seconds for a store
    /// of hundreds of MiB): the agent opens the store this way on the host's thread and runs
    /// [`Store::quick_check`] on its store thread.
    pub fn open_unchecked(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Io {
            path: dir.to_owned(),
            message: format!("cannot create the data directory: {e}"),
        })?;
        let path = dir.join(DB_FILE);
        let conn = Connection::open(&path).map_err(|e| StoreError::open(&path, e))?;
        let store = Self { conn, path };
        store.setup(true)?;
        Ok(store)
    }

    /// SQLite's structural check of the whole file (`PRAGMA quick_check`): a damaged file is an
    /// error that says what to do.
    pub fn quick_check(&self) -> Result<(), StoreError> {
        let db = self.db();
        let ok: String = self
            .conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(db)?;
        if ok != "ok" {
            return Err(StoreError::Io {
                path: self.path.clone(),
                message: format!(
                    "the database is damaged ({ok}); move it aside and restart to begin a new one"
                ),
            });
        }
        Ok(())
    }

    /// Opens an existing store for reading only (the CLI while the agent writes).
    pub fn open_read_only(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(DB_FILE);
        if !path.is_file() {
            return Err(StoreError::Io {
                path,
                message: "no store here (the agent creates it under VIGIL_DATA_DIR)".into(),
            });
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::open(&path, e))?;
        let store = Self { conn, path };
        store.setup(false)?;
        Ok(store)
    }

    fn setup(&self, write: bool) -> Result<(), StoreError> {
        let c = &self.conn;
        let db = |e| StoreError::db(&self.path, e);
        c.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db)?;
        let version: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(db)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Version {
                path: self.path.clone(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if !write {
            if version < SCHEMA_VERSION {
                return Err(StoreError::Io {
                    path: self.path.clone(),
                    message: "the store is not initialised yet (start the agent once)".into(),
                });
            }
            return Ok(());
        }
        if version == 0 {
            // Freed pages go back to the file system on `incremental_vacuum`; set before any table.
            c.pragma_update(None, "auto_vacuum", "INCREMENTAL")
                .map_err(db)?;
        }
        c.pragma_update(None, "journal_mode", "WAL").map_err(db)?;
        c.pragma_update(None, "synchronous", "FULL").map_err(db)?;
        c.execute_batch(SCHEMA).map_err(db)?;
        c.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(db)?;
        Ok(())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |e| StoreError::db(&self.path, e)
    }

    /// Records the columns and feature names of a schema (idempotent).
    pub fn register_schema(&mut self, s: &SchemaInfo) -> Result<(), StoreError> {
        let cols = serde_json::to_string(&s.columns).map_err(StoreError::json)?;
        let feats = serde_json::to_string(&s.features).map_err(StoreError::json)?;
        self.conn
            .execute(
                "INSERT OR IGNORE INTO schemas(hash, columns, features) VALUES (?1, ?2, ?3)",
                params![s.hash, cols, feats],
            )
            .map_err(self.db())?;
        Ok(())
    }

    /// A registered schema.
    pub fn schema(&self, hash: &str) -> Result<Option<SchemaInfo>, StoreError> {
        let row: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT columns, features FROM schemas WHERE hash = ?1",
                [hash],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.db())?;
        row.map(|(c, f)| {
            Ok(SchemaInfo {
                hash: hash.to_owned(),
                columns: serde_json::from_str(&c).map_err(StoreError::json)?,
                features: serde_json::from_str(&f).map_err(StoreError::json)?,
            })
        })
        .transpose()
    }

    /// Stores ticks and event states in one transaction: all or nothing.
    pub fn write_batch(&mut self, batch: &[Write]) -> Result<BatchOutcome, StoreError> {
        let path = self.path.clone();
        let db = |e| StoreError::db(&path, e);
        let tx = self.conn.transaction().map_err(db)?;
        let mut out = BatchOutcome::default();
        {
            let mut tick = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO ticks(t, schema, sample, features, score, raw, event_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(db)?;
            let mut event = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO events(id, start, opened, end_t, ended, peak, peak_at,
                     anomaly_type, opened_as, top_features, windows)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(db)?;
            let mut profile = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO profiles(event_id, started, seconds, hz, samples, pprof)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(db)?;
            for w in batch {
                match w {
                    Write::Tick(r) => {
                        let n = tick
                            .execute(params![
                                r.t,
                                r.schema,
                                to_blob(&r.sample),
                                r.features.as_deref().map(to_blob),
                                r.score.filter(|v| v.is_finite()),
                                r.raw.filter(|v| v.is_finite()),
                                r.event_id.and_then(|i| i64::try_from(i).ok()),
                            ])
                            .map_err(db)?;
                        if n == 1 {
                            out.ticks += 1;
                        } else {
                            out.duplicate_ticks += 1;
                        }
                    }
                    Write::Event(e) => {
                        let top =
                            serde_json::to_string(&e.top_features).map_err(StoreError::json)?;
                        event
                            .execute(params![
                                i64::try_from(e.id).unwrap_or(i64::MAX),
                                e.start,
                                e.opened,
                                e.end,
                                e.ended.map(|x| match x {
                                    vigil_models::EventEnd::Settled => "settled",
                                    vigil_models::EventEnd::LevelShift => "level_shift",
                                }),
                                e.peak,
                                e.peak_at,
                                e.anomaly_type.as_str(),
                                e.opened_as.as_str(),
                                top,
                                i64::try_from(e.windows).unwrap_or(i64::MAX),
                            ])
                            .map_err(db)?;
                        out.events += 1;
                    }
                    Write::Profile(p) => {
                        profile
                            .execute(params![
                                i64::try_from(p.event_id).unwrap_or(i64::MAX),
                                p.started,
                                p.seconds,
                                p.hz,
                                i64::try_from(p.samples).unwrap_or(i64::MAX),
                                p.pprof,
                            ])
                            .map_err(db)?;
                        out.profiles += 1;
                    }
                }
            }
        }
        tx.commit().map_err(db)?;
        Ok(out)
    }

    /// The profile kept with event `event_id`, if one was taken.
    pub fn profile(&self, event_id: u64) -> Result<Option<ProfileRecord>, StoreError> {
        let Ok(id) = i64::try_from(event_id) else {
            return Ok(None);
        };
        self.conn
            .query_row(
                "SELECT started, seconds, hz, samples, pprof FROM profiles WHERE event_id = ?1",
                params![id],
                |r| {
                    Ok(ProfileRecord {
                        event_id,
                        started: r.get(0)?,
                        seconds: r.get(1)?,
                        hz: r.get(2)?,
                        samples: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                        pprof: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(self.db())
    }

    /// The largest event id stored (0 when none): the agent numbers new events after it, so ids stay
    /// unique across restarts.
    pub fn max_event_id(&self) -> Result<u64, StoreError> {
        let v: Option<i64> = self
            .conn
            .query_row("SELECT MAX(id) FROM events", [], |r| r.get(0))
            .map_err(self.db())?;
        Ok(v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
    }

    /// One event.
    pub fn event(&self, id: u64) -> Result<Option<StoredEvent>, StoreError> {
        let id = i64::try_from(id).unwrap_or(i64::MAX);
        let mut stmt = self
            .conn
            .prepare_cached(&format!("{EVENT_COLUMNS} WHERE id = ?1"))
            .map_err(self.db())?;
        let mut rows = stmt.query_map([id], event_row).map_err(self.db())?;
        rows.next().transpose().map_err(self.db())
    }

    /// Events overlapping `[from, to]` (Unix seconds), oldest first, at most `limit`.
    pub fn events(&self, from: f64, to: f64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "{EVENT_COLUMNS} WHERE start <= ?2 AND (end_t IS NULL OR end_t >= ?1)
                 ORDER BY start LIMIT ?3"
            ))
            .map_err(self.db())?;
        let rows = stmt
            .query_map(
                params![from, to, i64::try_from(limit).unwrap_or(i64::MAX)],
                event_row,
            )
            .map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    /// Ticks in `[from, to]` (Unix seconds), oldest first, through `f` (so millions of rows need no
    /// memory): `(tick, sample, features)`. Stops early when `f` returns false.
    pub fn for_each_tick(
        &self,
        from: f64,
        to: f64,
        mut f: impl FnMut(&TickRecord) -> bool,
    ) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT t, schema, sample, features, score, raw, event_id FROM ticks
                 WHERE t >= ?1 AND t <= ?2 ORDER BY t",
            )
            .map_err(self.db())?;
        let mut rows = stmt.query(params![from, to]).map_err(self.db())?;
        while let Some(r) = rows.next().map_err(self.db())? {
            let rec = (|| -> rusqlite::Result<TickRecord> {
                Ok(TickRecord {
                    t: r.get(0)?,
                    schema: r.get(1)?,
                    sample: from_blob(&r.get::<_, Vec<u8>>(2)?),
                    features: r.get::<_, Option<Vec<u8>>>(3)?.map(|b| from_blob(&b)),
                    score: r.get(4)?,
                    raw: r.get(5)?,
                    event_id: r
                        .get::<_, Option<i64>>(6)?
                        .and_then(|v| u64::try_from(v).ok()),
                })
            })()
            .map_err(self.db())?;
            if !f(&rec) {
                break;
            }
        }
        Ok(())
    }

    /// The newest `limit` ticks of `schema` that have features, oldest first: `(time, features,
    /// inside an event)` — what a retrain reads.
    pub fn recent_windows(
        &self,
        schema: &str,
        limit: usize,
    ) -> Result<Vec<StoredWindow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT t, features, event_id FROM ticks
                 WHERE schema = ?1 AND features IS NOT NULL ORDER BY t DESC LIMIT ?2",
            )
            .map_err(self.db())?;
        let rows = stmt
            .query_map(
                params![schema, i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| {
                    Ok((
                        r.get::<_, f64>(0)?,
                        // Straight into the shared form a retrain keeps: one copy of the
                        // windows in memory, not two.
                        from_blob::<std::sync::Arc<[f64]>>(r.get_ref(1)?.as_blob()?),
                        r.get::<_, Option<i64>>(2)?.is_some(),
                    ))
                },
            )
            .map_err(self.db())?;
        let mut out: Vec<_> = rows.collect::<Result<_, _>>().map_err(self.db())?;
        out.reverse();
        Ok(out)
    }

    /// What a retrain reads (the agent's own and `vigil train --store`): the newest `limit` windows of
    /// `schema`, oldest first, and every label over their span as the detector's training reads it (an
    /// open label ends at `now`). `None` when no window with features is stored.
    pub fn retrain_input(
        &self,
        schema: &str,
        limit: usize,
        now: f64,
    ) -> Result<Option<RetrainRead>, StoreError> {
        let windows = self.recent_windows(schema, limit)?;
        let (Some(first), Some(last)) = (windows.first(), windows.last()) else {
            return Ok(None);
        };
        let labels = self
            .labels(&LabelQuery {
                from: first.0,
                to: last.0,
                limit: usize::MAX,
            })?
            .iter()
            .map(|l| l.to_label(now))
            .collect();
        Ok(Some((windows, labels)))
    }

    /// Adds a label (one transaction); returns it as stored.
    pub fn add_label(&mut self, l: &NewLabel, now: f64) -> Result<StoredLabel, StoreError> {
        l.check()?;
        let id = insert_label(&self.conn, l, now).map_err(self.db())?;
        self.label(id)?.ok_or_else(|| StoreError::Io {
            path: self.path.clone(),
            message: format!("label {id} vanished after it was written"),
        })
    }

    /// Adds many labels in one transaction: all or none (the first bad one is the error).
    pub fn add_labels(&mut self, labels: &[NewLabel], now: f64) -> Result<usize, StoreError> {
        for (i, l) in labels.iter().enumerate() {
            l.check()
                .map_err(|e| StoreError::Invalid(format!("label {}: {e}", i + 1)))?;
        }
        let path = self.path.clone();
        let db = |e| StoreError::db(&path, e);
        let tx = self.conn.transaction().map_err(db)?;
        for l in labels {
            insert_label(&tx, l, now).map_err(db)?;
        }
        tx.commit().map_err(db)?;
        Ok(labels.len())
    }

    /// A person's verdict on event `id`: a human label over the event's span (to `now` while it is
    /// open), carrying the event's type when the verdict is `anomaly`. `Ok(None)` when there is no
    /// such event.
    pub fn verdict(
        &mut self,
        id: u64,
        verdict: Verdict,
        note: Option<String>,
        confidence: f64,
        now: f64,
    ) -> Result<Option<StoredLabel>, StoreError> {
        let Some(ev) = self.event(id)? else {
            return Ok(None);
        };
        let label = NewLabel {
            start: ev.start_unix,
            end: Some(ev.end_unix.unwrap_or(now).max(ev.start_unix)),
            verdict,
            anomaly_type: match verdict {
                Verdict::Anomaly => AnomalyKind::parse(&ev.anomaly_type),
                Verdict::Normal => None,
            },
            source: "human".into(),
            confidence,
            note,
            event_id: Some(id),
        };
        self.add_label(&label, now).map(Some)
    }

    /// One label by id.
    pub fn label(&self, id: i64) -> Result<Option<StoredLabel>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("{LABEL_COLUMNS} WHERE id = ?1"))
            .map_err(self.db())?;
        let mut rows = stmt.query_map([id], labels::label_row).map_err(self.db())?;
        rows.next().transpose().map_err(self.db())
    }

    /// Labels overlapping `[from, to]`, oldest first (an open alert's label overlaps everything
    /// after its start).
    pub fn labels(&self, q: &LabelQuery) -> Result<Vec<StoredLabel>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "{LABEL_COLUMNS} WHERE start <= ?2 AND (end_t IS NULL OR end_t >= ?1)
                 ORDER BY start, id LIMIT ?3"
            ))
            .map_err(self.db())?;
        let rows = stmt
            .query_map(
                params![q.from, q.to, i64::try_from(q.limit).unwrap_or(i64::MAX)],
                labels::label_row,
            )
            .map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    /// Labels by source: `(source, count)`.
    pub fn label_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT source, COUNT(*) FROM labels GROUP BY source ORDER BY source")
            .map_err(self.db())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                ))
            })
            .map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    /// Applies an Alertmanager webhook in one transaction: each firing alert opens an anomaly label
    /// at `startsAt` (joined on `fingerprint` + `startsAt`; a repeat changes nothing), each resolved
    /// one closes it at `endsAt` (creating it closed when the firing notification was never seen).
    pub fn apply_webhook(
        &mut self,
        hook: &Webhook,
        confidence: f64,
        now: f64,
    ) -> Result<AlertOutcome, StoreError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(|e| StoreError::db(&path, e))?;
        let out = alertmanager::apply(&tx, hook, confidence, now)
            .map_err(|e| StoreError::db(&path, e))?;
        tx.commit().map_err(|e| StoreError::db(&path, e))?;
        Ok(out)
    }

    /// Records a model and what became of it; keeps the newest [`MODELS_KEPT`].
    pub fn add_model(
        &mut self,
        created: f64,
        outcome: &str,
        reason: &str,
        figures: &serde_json::Value,
        model_json: &str,
    ) -> Result<i64, StoreError> {
        let path = self.path.clone();
        let db = |e| StoreError::db(&path, e);
        let tx = self.conn.transaction().map_err(db)?;
        let id = tx
            .query_row(
                "INSERT INTO models(created, outcome, reason, figures, model)
                 VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                params![created, outcome, reason, figures.to_string(), model_json],
                |r| r.get::<_, i64>(0),
            )
            .map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(id)
    }

    /// Model history, newest first.
    pub fn models(&self, limit: usize) -> Result<Vec<StoredModel>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, created, outcome, reason, figures FROM models ORDER BY id DESC LIMIT ?1",
            )
            .map_err(self.db())?;
        let rows = stmt
            .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                let figures: String = r.get(4)?;
                Ok(StoredModel {
                    id: r.get(0)?,
                    created: fmt_t(r.get(1)?),
                    outcome: r.get(2)?,
                    reason: r.get(3)?,
                    figures: serde_json::from_str(&figures).unwrap_or(serde_json::Value::Null),
                })
            })
            .map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    /// The model file (JSON) of history entry `id`.
    pub fn model_json(&self, id: i64) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT model FROM models WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(self.db())
    }

    /// Counts and size.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let db = self.db();
        let count = |sql: &str| -> Result<u64, StoreError> {
            let n: i64 = self.conn.query_row(sql, [], |r| r.get(0)).map_err(&db)?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        let (first, last): (Option<f64>, Option<f64>) = self
            .conn
            .query_row("SELECT MIN(t), MAX(t) FROM ticks", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(&db)?;
        Ok(StoreStats {
            bytes: self.used_bytes()?,
            ticks: count("SELECT COUNT(*) FROM ticks")?,
            events: count("SELECT COUNT(*) FROM events")?,
            labels: count("SELECT COUNT(*) FROM labels")?,
            first_tick: first,
            last_tick: last,
        })
    }

    /// Bytes in use (pages in use × page size): cheap, unlike [`Store::stats`], which counts rows.
    pub fn used_bytes(&self) -> Result<u64, StoreError> {
        let q = |p: &str| -> Result<i64, StoreError> {
            self.conn
                .pragma_query_value(None, p, |r| r.get(0))
                .map_err(self.db())
        };
        let used = (q("page_count")? - q("freelist_count")?).max(0) * q("page_size")?;
        Ok(u64::try_from(used).unwrap_or(0))
    }

    /// Deletes ticks and events older than `now − max_age_seconds`, then the oldest ticks while the
    /// pages in use exceed `max_bytes`, and model history beyond [`MODELS_KEPT`]; each step in
    /// transactions of at most `chunk` rows, so the writer is never held long. Labels are never
    /// deleted here. Freed pages are returned to the file system.
    pub fn enforce_retention(
        &mut self,
        now: f64,
        max_age_seconds: f64,
        max_bytes: u64,
        chunk: usize,
    ) -> Result<Pruned, StoreError> {
        let path = self.path.clone();
        let db = |e| StoreError::db(&path, e);
        let chunk = i64::try_from(chunk.max(1)).unwrap_or(10_000);
        let cutoff = now - max_age_seconds;
        let mut out = Pruned::default();
        loop {
            let n = self
                .conn
                .execute(
                    "DELETE FROM ticks WHERE t IN (SELECT t FROM ticks WHERE t < ?1 ORDER BY t LIMIT ?2)",
                    params![cutoff, chunk],
                )
                .map_err(db)?;
            out.ticks += n as u64;
            if (n as i64) < chunk {
                break;
            }
        }
        out.events += self
            .conn
            .execute(
                "DELETE FROM events WHERE end_t IS NOT NULL AND end_t < ?1",
                params![cutoff],
            )
            .map_err(db)? as u64;
        out.models += self
            .conn
            .execute(
                "DELETE FROM models WHERE id NOT IN (SELECT id FROM models ORDER BY id DESC LIMIT ?1)",
                params![MODELS_KEPT as i64],
            )
            .map_err(db)? as u64;
        out.profiles += self
            .conn
            .execute(
                "DELETE FROM profiles WHERE event_id NOT IN (SELECT id FROM events)
                 OR event_id NOT IN (SELECT event_id FROM profiles ORDER BY event_id DESC LIMIT ?1)",
                params![PROFILES_KEPT as i64],
            )
            .map_err(db)? as u64;
        // Size: delete the oldest ticks in chunks until the pages in use fit.
        while self.used_bytes()? > max_bytes {
            let n = self
                .conn
                .execute(
                    "DELETE FROM ticks WHERE t IN (SELECT t FROM ticks ORDER BY t LIMIT ?1)",
                    params![chunk],
                )
                .map_err(db)?;
            out.ticks += n as u64;
            if n == 0 {
                break;
            }
        }
        if out.ticks + out.events + out.models + out.profiles > 0 {
            self.conn
                .execute_batch("PRAGMA incremental_vacuum;")
                .map_err(db)?;
            // The freed pages leave the file at the next checkpoint; a reader that holds an old
            // snapshot can delay that (the checkpoint then does what it can), never fail it.
            let _: rusqlite::Result<(i64, i64, i64)> =
                self.conn
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    });
        }
        Ok(out)
    }
}

/// Inserts one checked label; its id.
fn insert_label(c: &Connection, l: &NewLabel, now: f64) -> rusqlite::Result<i64> {
    // `execute` steps the statement to its end, so a failed commit (a full disk, in autocommit mode)
    // is this call's error. (`INSERT … RETURNING` read with `query_row` handed back the new id after
    // the first step and lost the commit's error: the label then "vanished".)
    c.prepare_cached(
        "INSERT INTO labels(start, end_t, label, anomaly_type, source, confidence, note,
         event_id, fingerprint, created)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, ?9)",
    )?
    .execute(params![
        l.start,
        l.end,
        l.verdict.as_str(),
        l.anomaly_type.map(AnomalyKind::as_str),
        l.source.as_str(),
        l.confidence,
        l.note,
        l.event_id.and_then(|i| i64::try_from(i).ok()),
        now,
    ])?;
    Ok(c.last_insert_rowid())
}

const EVENT_COLUMNS: &str = "SELECT id, start, opened, end_t, ended, peak, peak_at, anomaly_type,
    opened_as, top_features, windows,
    EXISTS(SELECT 1 FROM profiles WHERE profiles.event_id = events.id) FROM events";

const LABEL_COLUMNS: &str =
    "SELECT id, start, end_t, label, anomaly_type, source, confidence, note,
    event_id, fingerprint, created FROM labels";

fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    let start: f64 = r.get(1)?;
    let end: Option<f64> = r.get(3)?;
    let top: String = r.get(9)?;
    Ok(StoredEvent {
        id: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
        start: fmt_t(start),
        opened: fmt_t(r.get(2)?),
        end: end.map(fmt_t),
        ended: r.get(4)?,
        peak: r.get(5)?,
        peak_at: fmt_t(r.get(6)?),
        anomaly_type: r.get(7)?,
        opened_as: r.get(8)?,
        top_features: serde_json::from_str(&top).unwrap_or_default(),
        windows: u64::try_from(r.get::<_, i64>(10)?).unwrap_or(0),
        profile: r.get(11)?,
        start_unix: start,
        end_unix: end,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// A full disk (here: a page limit on the database, which SQLite reports the same way) is said as
    /// such, and a label is stored or refused, never "vanished after it was written".
    #[test]
    fn a_full_disk_is_said_as_such_and_every_label_is_stored_or_refused() {
        let dir = std::env::temp_dir().join(format!("vigil-store-full-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut s = Store::open(&dir).unwrap();
        let pages: i64 = s
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        s.conn
            .pragma_update(None, "max_page_count", pages + 2)
            .unwrap();
        let l = NewLabel {
            start: 1_700_000_000.0,
            end: Some(1_700_000_060.0),
            verdict: Verdict::Normal,
            anomaly_type: None,
            source: "human".into(),
            confidence: 0.9,
            note: Some("x".repeat(4000)),
            event_id: None,
        };
        let mut stored = 0;
        let err = loop {
            match s.add_label(&l, 0.0) {
                Ok(_) => stored += 1,
                Err(e) => break e,
            }
            assert!(stored < 10_000, "the page limit was never reached");
        };
        let msg = err.to_string();
        assert!(msg.contains("full") && !msg.contains("vanished"), "{msg}");
        assert_eq!(
            s.labels(&LabelQuery::default()).unwrap().len(),
            stored,
            "every acknowledged label is there, the refused one is not"
        );
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
