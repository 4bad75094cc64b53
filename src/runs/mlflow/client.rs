//! The client of an MLflow tracking server (its REST API, `/api/2.0/mlflow/…`, artifacts through the server's proxy,
//! `/api/2.0/mlflow-artifacts/…`), which writes a [`RunExport`] idempotently: one report folder is one MLflow run,
//! found again by its tag `pipeline.key`; exporting again logs only what the MLflow run lacks, and a run is marked
//! `pipeline.export = complete` only once everything is there.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{Value, json};

use super::run::{MetricPoint, RunExport, RunState};

/// MLflow's limits per `runs/log-batch` call.
const MAX_METRICS: usize = 1000;
const MAX_PARAMS: usize = 100;
const MAX_TAGS: usize = 100;
/// MLflow's longest parameter value (6000 before MLflow 2.x's 8000): longer ones are cut, and said to be.
const MAX_PARAM_VALUE: usize = 6000;

/// The longest a request waits to connect, and then for the server's answer: a stalled server fails in seconds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest one call may take in all (an artifact upload on a slow link).
const CALL_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest the export of one run may take, all its calls together.
pub const EXPORT_BOUND: Duration = Duration::from_secs(15 * 60);
/// Bounds on walking a run's artifact listing: a server whose listing never ends (or names itself) is refused.
const MAX_LISTINGS: usize = 10_000;
const MAX_ARTIFACT_DEPTH: usize = 16;

pub const KEY_TAG: &str = "pipeline.key";
pub const EXPORT_TAG: &str = "pipeline.export";

/// What an export did to one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    Created {
        epochs: usize,
        files: usize,
    },
    Updated {
        epochs: usize,
        files: usize,
    },
    /// Already complete in MLflow: nothing was sent.
    Unchanged,
}

/// An MLflow run as the server has it.
struct Existing {
    id: String,
    /// Made by this export just now: it has nothing logged yet.
    fresh: bool,
    artifact_uri: String,
    params: HashMap<String, String>,
    tags: HashMap<String, String>,
}

/// Why a call failed, for the caller's exit code.
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    /// The server cannot be reached, or refused our credentials: nothing about this run.
    #[error("{0}")]
    Server(String),
    /// This run could not be exported (a refused value, a failed upload).
    #[error("{0}")]
    Run(String),
    /// Ctrl-C or SIGTERM: the call in flight was left, nothing more is sent.
    #[error("interrupted")]
    Interrupted,
}

/// One HTTP call, owned, so it can run on a thread of its own that an interrupt can walk away from.
struct Call {
    /// `None`: a GET with `query`; else a POST (`true`) or PUT (`false`) of a body.
    post: Option<bool>,
    url: String,
    query: Vec<(String, String)>,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Call {
    fn get(url: String, query: &[(&str, &str)]) -> Self {
        Self {
            post: None,
            url,
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            content_type: "",
            body: Vec::new(),
        }
    }

    fn with_body(url: String, post: bool, content_type: &'static str, body: Vec<u8>) -> Self {
        Self {
            post: Some(post),
            url,
            query: Vec::new(),
            content_type,
            body,
        }
    }

    /// Makes the call: the status and the body as text.
    fn run(self, agent: &ureq::Agent, auth: Option<&str>) -> Result<(u16, String), ureq::Error> {
        let mut response = match self.post {
            None => {
                let mut request = agent.get(&self.url);
                for (k, v) in &self.query {
                    request = request.query(k, v);
                }
                if let Some(auth) = auth {
                    request = request.header("Authorization", auth);
                }
                request.call()?
            }
            Some(post) => {
                let mut request = if post {
                    agent.post(&self.url)
                } else {
                    agent.put(&self.url)
                };
                request = request.header("Content-Type", self.content_type);
                if let Some(auth) = auth {
                    request = request.header("Authorization", auth);
                }
                request.send(&self.body[..])?
            }
        };
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string()?;
        Ok((status, body))
    }
}

/// Every artifact of the run `run_id` with its size, from `list` (a folder's listing, `""` the top). The walk is
/// bounded: each folder is listed once, must lie inside the one that named it, at most [`MAX_ARTIFACT_DEPTH`] deep,
/// in at most [`MAX_LISTINGS`] calls — a listing that names itself or never ends is the server's fault, said so.
fn walk_artifacts(
    run_id: &str,
    server: &str,
    mut list: impl FnMut(&str) -> Result<Value, MlflowError>,
) -> Result<HashMap<String, u64>, MlflowError> {
    let endless = |why: String| {
        MlflowError::Server(format!(
            "the MLflow server at `{server}` lists the artifacts of run {run_id} without end ({why}); is it an \
             MLflow tracking server?"
        ))
    };
    let mut out = HashMap::new();
    let mut dirs = vec![String::new()];
    let mut seen: HashSet<String> = HashSet::new();
    let mut listings = 0;
    while let Some(dir) = dirs.pop() {
        listings += 1;
        if listings > MAX_LISTINGS {
            return Err(endless(format!("more than {MAX_LISTINGS} folders")));
        }
        let listed = list(&dir)?;
        for f in listed["files"].as_array().into_iter().flatten() {
            let Some(path) = f["path"].as_str() else {
                continue;
            };
            if f["is_dir"].as_bool() != Some(true) {
                out.insert(path.to_string(), f["file_size"].as_u64().unwrap_or(0));
                continue;
            }
            let inside = dir.is_empty()
                || path
                    .strip_prefix(dir.as_str())
                    .is_some_and(|r| r.starts_with('/'));
            if !inside || path.split('/').count() > MAX_ARTIFACT_DEPTH {
                return Err(endless(format!("the folder `{dir}` lists `{path}`")));
            }
            if seen.insert(path.to_string()) {
                dirs.push(path.to_string());
            }
        }
    }
    Ok(out)
}

/// A client of one MLflow tracking server.
pub struct Client {
    base: String,
    /// `base` with any credentials in it (`http://user:pw@host`) replaced by `***`: what messages show.
    shown: String,
    agent: ureq::Agent,
    auth: Option<String>,
    experiments: Mutex<HashMap<String, String>>,
    /// When the export of the current run must be done by ([`EXPORT_BOUND`] after it began).
    deadline: Mutex<Option<Instant>>,
}

/// `http://user:password@host/…` as `http://***@host/…`: credentials never reach a message or a log.
pub fn redacted(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => uri.to_string(),
    }
}

impl Client {
    /// A client of the server at `uri` (`http://…` or `https://…`), with the credentials MLflow's own clients read:
    /// `MLFLOW_TRACKING_TOKEN`, or `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD`.
    pub fn new(uri: &str) -> Result<Self, MlflowError> {
        let base = uri.trim_end_matches('/').to_string();
        let shown = redacted(&base);
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(MlflowError::Server(format!(
                "`{shown}` is not the address of an MLflow server; give one like `http://127.0.0.1:5000` (a \
                 `file:` or `databricks` tracking URI cannot be written through the REST API)"
            )));
        }
        let auth = match (
            std::env::var("MLFLOW_TRACKING_TOKEN").ok(),
            std::env::var("MLFLOW_TRACKING_USERNAME").ok(),
        ) {
            (Some(token), _) => Some(format!("Bearer {token}")),
            (None, Some(user)) => {
                use base64::Engine as _;
                let password = std::env::var("MLFLOW_TRACKING_PASSWORD").unwrap_or_default();
                let pair =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                Some(format!("Basic {pair}"))
            }
            (None, None) => None,
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(ANSWER_TIMEOUT))
            .timeout_global(Some(CALL_TIMEOUT))
            .build()
            .into();
        Ok(Self {
            base,
            shown,
            agent,
            auth,
            experiments: Default::default(),
            deadline: Default::default(),
        })
    }

    /// The server's address as shown to people: without credentials.
    pub fn uri(&self) -> &str {
        &self.shown
    }

    /// A request's failure in words: unreachable, refused credentials, or what the server said.
    fn failure(&self, what: &str, e: ureq::Error) -> MlflowError {
        MlflowError::Server(format!(
            "cannot reach the MLflow server at `{}` ({what}: {})",
            self.shown,
            e.to_string().replace(&self.base, &self.shown)
        ))
    }

    fn check(&self, what: &str, status: u16, body: &str) -> Result<Value, MlflowError> {
        if status == 401 || status == 403 {
            return Err(MlflowError::Server(format!(
                "the MLflow server at `{}` refused the request ({what}: HTTP {status}); set \
                 MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN",
                self.shown
            )));
        }
        let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            let code = value["error_code"].as_str().unwrap_or("");
            let message = value["message"].as_str().unwrap_or(body);
            let message: String = message.chars().take(500).collect();
            let error = format!("{what}: HTTP {status} {code}: {message}");
            return Err(if status >= 500 || status == 404 && code.is_empty() {
                MlflowError::Server(format!(
                    "the MLflow server at `{}` failed ({error}); is it an MLflow tracking server?",
                    self.shown
                ))
            } else {
                MlflowError::Run(error)
            });
        }
        Ok(value)
    }

    /// Makes `call` on a thread of its own and waits for it, checking for an interrupt as it waits: Ctrl-C or
    /// SIGTERM is honoured at once, even while a server stalls. No call starts after the current run's deadline.
    fn call(&self, what: &str, call: Call) -> Result<(u16, String), MlflowError> {
        crate::interrupt::check().map_err(|_| MlflowError::Interrupted)?;
        let deadline = *self.deadline.lock().unwrap_or_else(|e| e.into_inner());
        if deadline.is_some_and(|d| Instant::now() > d) {
            return Err(MlflowError::Server(format!(
                "the export of one run through the MLflow server at `{}` took more than {} minutes; is it                  overloaded?",
                self.shown,
                EXPORT_BOUND.as_secs() / 60
            )));
        }
        let (agent, auth) = (self.agent.clone(), self.auth.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("mlflow-call".into())
            .spawn(move || {
                let _ = tx.send(call.run(&agent, auth.as_deref()));
            })
            .map_err(|e| MlflowError::Server(format!("cannot start a request ({e})")))?;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(answer) => return answer.map_err(|e| self.failure(what, e)),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    // The thread is left to finish or time out on its own; nothing waits for it.
                    crate::interrupt::check().map_err(|_| MlflowError::Interrupted)?;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(MlflowError::Server(format!("a request ({what}) stopped")));
                }
            }
        }
    }

    fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, MlflowError> {
        let (status, body) = self.call(path, Call::get(format!("{}{path}", self.base), query))?;
        self.check(path, status, &body)
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value, MlflowError> {
        let call = Call::with_body(
            format!("{}{path}", self.base),
            true,
            "application/json",
            body.to_string().into_bytes(),
        );
        let (status, body) = self.call(path, call)?;
        self.check(path, status, &body)
    }

    /// Answers at all: the first call of an export, so a wrong address fails before anything is read.
    pub fn ping(&self) -> Result<(), MlflowError> {
        self.get(
            "/api/2.0/mlflow/experiments/search",
            &[("max_results", "1")],
        )
        .map(|_| ())
    }

    /// The id of the experiment `name`, created if missing.
    pub fn experiment_id(&self, name: &str) -> Result<String, MlflowError> {
        if let Some(id) = self.experiments.lock().expect("not poisoned").get(name) {
            return Ok(id.clone());
        }
        let found = match self.get(
            "/api/2.0/mlflow/experiments/get-by-name",
            &[("experiment_name", name)],
        ) {
            Ok(v) => v["experiment"]["experiment_id"]
                .as_str()
                .map(str::to_string),
            Err(MlflowError::Run(e)) if e.contains("RESOURCE_DOES_NOT_EXIST") => None,
            Err(e) => return Err(e),
        };
        let id = match found {
            Some(id) => id,
            None => match self.post(
                "/api/2.0/mlflow/experiments/create",
                &json!({ "name": name }),
            ) {
                Ok(v) => v["experiment_id"]
                    .as_str()
                    .ok_or_else(|| MlflowError::Run("experiments/create gave no id".into()))?
                    .to_string(),
                // Another export created it meanwhile.
                Err(MlflowError::Run(e)) if e.contains("RESOURCE_ALREADY_EXISTS") => self.get(
                    "/api/2.0/mlflow/experiments/get-by-name",
                    &[("experiment_name", name)],
                )?["experiment"]["experiment_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                Err(e) => return Err(e),
            },
        };
        self.experiments
            .lock()
            .expect("not poisoned")
            .insert(name.to_string(), id.clone());
        Ok(id)
    }

    /// The run tagged with `key` in experiment `experiment_id`.
    fn find(&self, experiment_id: &str, key: &str) -> Result<Option<Existing>, MlflowError> {
        let quoted = if key.contains('\'') {
            format!("\"{key}\"")
        } else {
            format!("'{key}'")
        };
        let found = self.post(
            "/api/2.0/mlflow/runs/search",
            &json!({
                "experiment_ids": [experiment_id],
                "filter": format!("tags.`{KEY_TAG}` = {quoted}"),
                "max_results": 2,
            }),
        )?;
        let Some(run) = found["runs"].as_array().and_then(|r| r.first()) else {
            return Ok(None);
        };
        let pairs = |v: &Value| -> HashMap<String, String> {
            v.as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|i| {
                            Some((
                                i["key"].as_str()?.to_string(),
                                i["value"].as_str()?.to_string(),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(Some(Existing {
            fresh: false,
            id: run["info"]["run_id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            artifact_uri: run["info"]["artifact_uri"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            params: pairs(&run["data"]["params"]),
            tags: pairs(&run["data"]["tags"]),
        }))
    }

    /// The highest step logged for `key` in the run, if any.
    fn last_step(&self, run_id: &str, key: &str) -> Result<Option<i64>, MlflowError> {
        let history = self.get(
            "/api/2.0/mlflow/metrics/get-history",
            &[("run_id", run_id), ("metric_key", key)],
        )?;
        Ok(history["metrics"]
            .as_array()
            .and_then(|m| m.iter().filter_map(|p| p["step"].as_i64()).max()))
    }

    /// Every artifact of the run, with its size.
    fn artifacts(&self, run_id: &str) -> Result<HashMap<String, u64>, MlflowError> {
        walk_artifacts(run_id, &self.shown, |dir| {
            let mut query = vec![("run_id", run_id)];
            if !dir.is_empty() {
                query.push(("path", dir));
            }
            self.get("/api/2.0/mlflow/artifacts/list", &query)
        })
    }

    fn upload(&self, artifact_uri: &str, name: &str, file: &Path) -> Result<(), MlflowError> {
        let Some(rest) = artifact_uri.strip_prefix("mlflow-artifacts:") else {
            return Err(MlflowError::Run(format!(
                "the server keeps this run's artifacts at `{artifact_uri}`, which only it can write; start \
                 `mlflow server` with artifact proxying (`--serve-artifacts`, the default since MLflow 2)"
            )));
        };
        let bytes = crate::paths::read_regular(file)
            .map_err(|e| MlflowError::Run(format!("cannot read `{}`: {e}", file.display())))?;
        let rest = rest.trim_start_matches('/');
        let path = format!("/api/2.0/mlflow-artifacts/artifacts/{rest}/{name}");
        let call = Call::with_body(
            format!("{}{path}", self.base),
            false,
            "application/octet-stream",
            bytes,
        );
        let (status, text) = self.call(&path, call)?;
        self.check(&format!("uploading `{name}`"), status, &text)
            .map(|_| ())
    }

    /// `runs/log-batch` within MLflow's limits per call.
    fn log(
        &self,
        run_id: &str,
        metrics: &[MetricPoint],
        params: &[(String, String)],
        tags: &[(String, String)],
    ) -> Result<(), MlflowError> {
        let (mut m, mut p, mut t) = (metrics, params, tags);
        while !(m.is_empty() && p.is_empty() && t.is_empty()) {
            let (pn, tn) = (p.len().min(MAX_PARAMS), t.len().min(MAX_TAGS));
            let mn = m.len().min(MAX_METRICS - pn - tn);
            let body = json!({
                "run_id": run_id,
                "metrics": m[..mn].iter().map(|x| json!({
                    "key": x.key, "value": x.value, "step": x.step, "timestamp": x.timestamp
                })).collect::<Vec<_>>(),
                "params": p[..pn].iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
                "tags": t[..tn].iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
            });
            self.post("/api/2.0/mlflow/runs/log-batch", &body)?;
            (m, p, t) = (&m[mn..], &p[pn..], &t[tn..]);
        }
        Ok(())
    }

    /// Makes the MLflow run of `run` complete (or, for a run in progress, as complete as it is now).
    pub fn export(&self, run: &RunExport) -> Result<Done, MlflowError> {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Instant::now() + EXPORT_BOUND);
        let experiment_id = self.experiment_id(&run.experiment)?;
        let existing = self.find(&experiment_id, &run.key)?;
        if let Some(e) = &existing
            && e.tags.get(EXPORT_TAG).map(String::as_str) == Some("complete")
        {
            return Ok(Done::Unchanged);
        }
        let created = existing.is_none();
        let existing = match existing {
            Some(e) => e,
            None => {
                let made = self.post(
                    "/api/2.0/mlflow/runs/create",
                    &json!({
                        "experiment_id": experiment_id,
                        "run_name": run.run_name,
                        "start_time": run.start_ms,
                        "tags": [
                            {"key": KEY_TAG, "value": run.key},
                            {"key": EXPORT_TAG, "value": "partial"},
                        ],
                    }),
                )?;
                let info = &made["run"]["info"];
                Existing {
                    id: info["run_id"].as_str().unwrap_or_default().to_string(),
                    fresh: true,
                    artifact_uri: info["artifact_uri"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    params: HashMap::new(),
                    tags: HashMap::new(),
                }
            }
        };
        self.fill(run, &existing).map_err(|e| match e {
            MlflowError::Interrupted => MlflowError::Interrupted,
            MlflowError::Run(why) | MlflowError::Server(why) => MlflowError::Run(format!(
                "{why}; MLflow run {} of `{}` is only partly exported (tagged `{EXPORT_TAG} = partial`): export \
                 again to finish it",
                existing.id, run.key
            )),
        })?;
        let epochs = run
            .history
            .iter()
            .map(|p| p.step)
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        let files = run.files.len();
        Ok(if created {
            Done::Created { epochs, files }
        } else {
            Done::Updated { epochs, files }
        })
    }

    /// Logs what the MLflow run lacks, uploads the files it does not have, then marks it.
    fn fill(&self, run: &RunExport, existing: &Existing) -> Result<(), MlflowError> {
        let mut params = Vec::new();
        for (k, v) in &run.params {
            let v: String = v.chars().take(MAX_PARAM_VALUE).collect();
            match existing.params.get(k) {
                None => params.push((k.clone(), v)),
                Some(old) if *old == v => {}
                Some(old) => {
                    return Err(MlflowError::Run(format!(
                        "parameter `{k}` is `{old}` in MLflow but `{v}` in the report; MLflow cannot change a \
                         parameter, so delete that MLflow run to export this one afresh"
                    )));
                }
            }
        }
        // Per-epoch values after the last step each key has (a run exported while it trained has some).
        let mut after: HashMap<&str, i64> = HashMap::new();
        if !existing.fresh {
            let keys: std::collections::BTreeSet<&str> =
                run.history.iter().map(|p| p.key.as_str()).collect();
            for key in keys {
                if let Some(step) = self.last_step(&existing.id, key)? {
                    after.insert(key, step);
                }
            }
        }
        let mut metrics: Vec<MetricPoint> = run
            .history
            .iter()
            .filter(|p| after.get(p.key.as_str()).is_none_or(|&s| p.step > s))
            .cloned()
            .collect();
        if run.state != RunState::Running {
            metrics.extend(run.summary.iter().cloned());
        }
        let mut tags: Vec<(String, String)> = run
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        tags.push((EXPORT_TAG.to_string(), "partial".to_string()));
        self.log(&existing.id, &metrics, &params, &tags)?;

        let have = self.artifacts(&existing.id)?;
        for (name, path) in &run.files {
            let size = std::fs::metadata(path).map(|m| m.len()).ok();
            if have.get(name).copied() != size {
                self.upload(&existing.artifact_uri, name, path)?;
            }
        }
        if run.state != RunState::Running {
            let mut update = json!({ "run_id": existing.id, "status": run.state.as_str() });
            if let Some(end) = run.end_ms {
                update["end_time"] = json!(end);
            }
            self.post("/api/2.0/mlflow/runs/update", &update)?;
            self.log(
                &existing.id,
                &[],
                &[],
                &[(EXPORT_TAG.to_string(), "complete".to_string())],
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(files: &[(&str, bool)]) -> Value {
        json!({ "files": files.iter().map(|(p, d)| json!({"path": p, "is_dir": d, "file_size": 3})).collect::<Vec<_>>() })
    }

    /// A well-formed tree is walked whole, each folder once.
    #[test]
    fn a_run_s_artifact_tree_is_walked_whole() {
        let mut calls = Vec::new();
        let found = walk_artifacts("r", "s", |dir| {
            calls.push(dir.to_string());
            Ok(match dir {
                "" => listing(&[("a.csv", false), ("p1", true)]),
                "p1" => listing(&[("p1/b.mid", false), ("p1/deep", true)]),
                "p1/deep" => listing(&[("p1/deep/c.svg", false)]),
                _ => listing(&[]),
            })
        })
        .unwrap();
        assert_eq!(found.len(), 3);
        assert_eq!(calls.len(), 3);
    }

    /// A listing that names itself, a folder outside the one listed, or one that nests without end is refused
    /// after a bounded number of calls — never an endless walk.
    #[test]
    fn a_listing_that_names_itself_or_never_ends_is_refused() {
        let mut calls = 0;
        let itself = walk_artifacts("r", "s", |dir| {
            calls += 1;
            Ok(match dir {
                "" => listing(&[("p", true)]),
                _ => listing(&[("p", true)]),
            })
        });
        assert!(matches!(itself, Err(MlflowError::Server(m)) if m.contains("without end")));
        assert_eq!(calls, 2);
        let mut calls = 0;
        let deeper = walk_artifacts("r", "s", |dir| {
            calls += 1;
            let next = if dir.is_empty() {
                "d".to_string()
            } else {
                format!("{dir}/d")
            };
            Ok(listing(&[(&next, true)]))
        });
        assert!(matches!(deeper, Err(MlflowError::Server(_))));
        assert!(calls <= MAX_ARTIFACT_DEPTH + 1, "{calls} calls");
        let mut calls = 0;
        let wide = walk_artifacts("r", "s", |dir| {
            calls += 1;
            let names: Vec<String> = (0..50)
                .map(|i| {
                    if dir.is_empty() {
                        format!("{i}")
                    } else {
                        format!("{dir}/{i}")
                    }
                })
                .collect();
            Ok(listing(
                &names.iter().map(|n| (n.as_str(), true)).collect::<Vec<_>>(),
            ))
        });
        assert!(matches!(wide, Err(MlflowError::Server(_))));
        assert!(calls <= MAX_LISTINGS + 1, "{calls} calls");
    }
}
