//! The content-addressed store under `cache/`: one directory per stage fingerprint, written atomically.
//!
//! Layout (see docs/src/reference/caching.md): `v1/entries/ab/abcd…/` holds `output.bin` (the artifact), `files/` (report files the
//! stage made) and `record.json`, written last. An entry is built in `v1/tmp/` and renamed into place, so a crash
//! leaves at most an orphan in `tmp/`, never a half entry. An entry whose record is missing, unreadable or does not
//! match its files' hashes is a miss. `v1/stages/<experiment>/<stage>.json` remembers the fingerprint each stage last
//! ran with, only to explain the next miss.
//!
//! `cache gc` may run at any moment beside any number of runs. Each run process keeps a file `v1/live/<pid>-….keys`,
//! locked for as long as the process lives, listing every entry it has looked up, stored or resumed from
//! ([`Cache::pin`]); gc keeps what a live file names. Pinning and looking up happen under a shared lock on
//! `v1/gc.lock`, which gc holds exclusively while it decides and deletes, so an entry is either pinned before gc
//! looks or looked up after gc is done (then missing, and recomputed). Lock files are only unlinked by a holder, and
//! [`Cache::claim`] checks that the file it locked is still the one at its path.

mod cache;
mod checkpoint;
pub mod collect;
mod history;
mod locks;
pub mod remote;
mod sync;

pub use cache::{Cache, EntryMeta, Expect, FileRecord, Lookup, Record};
pub use checkpoint::Checkpoint;
pub use collect::size_of;
pub use remote::{PushPolicy, Remote, RemoteConfig, RemoteSummary};
