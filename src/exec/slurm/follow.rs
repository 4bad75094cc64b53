//! Following Slurm jobs until they end: one thread per process asks Slurm about every job this process waits for,
//! with one `squeue` call per poll for all of them (not one poller per job), and wakes each waiter when its job's
//! state changes. Slurm being unreachable (a controller restart, a network hiccup) is retried with backoff and never
//! taken for the end of a job; only after [`GIVE_UP`] of failures do the waiters get the error.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

use super::driver::{JobState, ended, state, states};

/// Between polls while Slurm answers.
const POLL: Duration = Duration::from_millis(500);
/// The longest wait between tries while Slurm does not answer.
const MAX_BACKOFF: Duration = Duration::from_secs(15);
/// How long Slurm may stay unreachable before the jobs' waiters are told.
const GIVE_UP: Duration = Duration::from_secs(300);

/// What the follower knows of one job.
#[derive(Debug, Clone)]
enum Seen {
    /// Queued or running: Slurm's word for it.
    Going(String),
    Ended(JobState),
    /// Slurm could not be asked for too long.
    Lost(String),
}

#[derive(Default)]
struct Table {
    jobs: BTreeMap<String, Seen>,
    /// Whether the polling thread is alive.
    polling: bool,
}

#[derive(Default)]
struct Follower {
    table: Mutex<Table>,
    changed: Condvar,
}

fn follower() -> &'static Arc<Follower> {
    static FOLLOWER: OnceLock<Arc<Follower>> = OnceLock::new();
    FOLLOWER.get_or_init(Arc::default)
}

/// Blocks until job `job_id` ends and returns how; `on_state` hears each new state on the way (`RUNNING`). Ctrl-C
/// returns [`crate::interrupt::Interrupted`] (the job keeps running: cancelling is the caller's decision).
pub fn follow(job_id: &str, mut on_state: impl FnMut(&str)) -> Result<JobState> {
    let f = follower().clone();
    let mut table = f.table.lock().unwrap_or_else(|e| e.into_inner());
    table
        .jobs
        .insert(job_id.to_string(), Seen::Going("PENDING".into()));
    if !table.polling {
        table.polling = true;
        let f = f.clone();
        std::thread::spawn(move || poll(&f));
    }
    let mut last = String::from("PENDING");
    loop {
        if crate::interrupt::requested() {
            table.jobs.remove(job_id);
            return Err(crate::interrupt::Interrupted.into());
        }
        match table.jobs.get(job_id).cloned() {
            Some(Seen::Ended(end)) => {
                table.jobs.remove(job_id);
                return Ok(end);
            }
            Some(Seen::Lost(why)) => {
                table.jobs.remove(job_id);
                return Err(anyhow!("lost track of Slurm job {job_id}: {why}"));
            }
            Some(Seen::Going(now)) if now != last => {
                on_state(&now);
                last = now;
            }
            _ => {}
        }
        table = f
            .changed
            .wait_timeout(table, Duration::from_millis(200))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// The polling thread: runs while any job is followed.
fn poll(f: &Follower) {
    let mut failing_since: Option<Instant> = None;
    let mut backoff = POLL;
    loop {
        let ids: Vec<String> = {
            let mut table = f.table.lock().unwrap_or_else(|e| e.into_inner());
            let going: Vec<String> = table
                .jobs
                .iter()
                .filter(|(_, s)| matches!(s, Seen::Going(_)))
                .map(|(id, _)| id.clone())
                .collect();
            if going.is_empty() {
                table.polling = false;
                return;
            }
            going
        };
        let news = ask(&ids);
        let mut table = f.table.lock().unwrap_or_else(|e| e.into_inner());
        match news {
            Ok(news) => {
                failing_since = None;
                backoff = POLL;
                for (id, seen) in news {
                    if let Some(slot) = table.jobs.get_mut(&id) {
                        *slot = seen;
                    }
                }
            }
            Err(e) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= GIVE_UP {
                    let why = format!(
                        "Slurm did not answer for {} s: {e:#}",
                        since.elapsed().as_secs()
                    );
                    for id in &ids {
                        table.jobs.insert(id.clone(), Seen::Lost(why.clone()));
                    }
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        f.changed.notify_all();
        drop(table);
        std::thread::sleep(backoff);
    }
}

/// One round of questions: one `squeue` for all jobs; `scontrol` (then `sacct`) only for those that ended (for their
/// exit code) or that squeue no longer lists.
fn ask(ids: &[String]) -> Result<Vec<(String, Seen)>> {
    let listed = states(ids)?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let going = listed
            .as_ref()
            .and_then(|l| l.get(id))
            .filter(|s| !ended(s));
        out.push(match going {
            Some(s) => (id.clone(), Seen::Going(s.clone())),
            None => {
                let end = state(id)?;
                if end.finished() {
                    (id.clone(), Seen::Ended(end))
                } else {
                    (id.clone(), Seen::Going(end.state))
                }
            }
        });
    }
    Ok(out)
}
