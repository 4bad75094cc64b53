//! Runs an experiment's stages in graph order against the cache: fingerprint, look up, run what is missing.
//!
//! A stage's fingerprint covers its kind, version, parameters and the *content hashes* of its inputs, so a stage that
//! re-runs and produces byte-identical output leaves its dependents cached (early cut-off). Artifacts are loaded
//! from the cache only when a stage that needs them actually runs.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use indicatif::MultiProgress;
use serde::Serialize;

use crate::artifact::Artifact;
use crate::cache::{Cache, EntryMeta, Lookup, Record};
use crate::experiment::Experiment;
use crate::fingerprint::{Fingerprint, Hash, InputHash, Reason, explain};
use crate::stages::{ExternalInputs, RunContext, StageKind};

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Stages to re-run even when cached (with everything downstream).
    pub force: Vec<String>,
    /// Print cached stages and the reason for each run on stderr.
    pub verbose: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Cached,
    Ran,
    Failed,
    /// Not run because an earlier stage failed.
    NotRun,
}

#[derive(Debug)]
pub struct StageResult {
    pub name: String,
    pub kind: StageKind,
    pub status: Status,
    pub reasons: Vec<Reason>,
    pub fingerprint: Option<Hash>,
    pub record: Option<Record>,
    pub seconds: f64,
    pub error: Option<String>,
}

impl StageResult {
    fn new(name: &str, kind: StageKind, status: Status) -> Self {
        Self {
            name: name.to_string(),
            kind,
            status,
            reasons: Vec::new(),
            fingerprint: None,
            record: None,
            seconds: 0.0,
            error: None,
        }
    }
}

#[derive(Debug)]
pub struct Outcome {
    /// In run order.
    pub stages: Vec<StageResult>,
}

impl Outcome {
    pub fn failed(&self) -> Option<&StageResult> {
        self.stages.iter().find(|s| s.status == Status::Failed)
    }

    pub fn count(&self, status: Status) -> usize {
        self.stages.iter().filter(|s| s.status == status).count()
    }
}

/// A stage's fingerprint from its configuration and its inputs' content hashes.
fn fingerprint_of(
    exp: &Experiment,
    i: usize,
    inputs: Vec<InputHash>,
    external: &ExternalInputs,
) -> Fingerprint {
    let stage = &exp.graph.stages[i].stage();
    Fingerprint {
        kind: stage.kind().name().to_string(),
        version: stage.kind().version(),
        params: stage.params(),
        inputs,
        files: external.files.clone(),
        files_root: external.display_root.clone(),
    }
}

/// Why stage `i` must run, given that its fingerprint `fp` has no intact entry.
fn miss_reasons(cache: &Cache, exp: &Experiment, i: usize, fp: &Fingerprint) -> Vec<Reason> {
    match cache.last(&exp.name, &exp.graph.stages[i].name) {
        None => vec![Reason::NeverRan],
        Some(old) if old.hash() == fp.hash() => vec![Reason::EntryMissing],
        Some(old) => {
            let reasons = fp.diff(&old);
            if reasons.is_empty() {
                vec![Reason::Unrecorded]
            } else {
                reasons
            }
        }
    }
}

/// Which stages `--force` re-runs, and the reason for each.
fn forced(exp: &Experiment, names: &[String]) -> HashMap<usize, Reason> {
    let mut out = HashMap::new();
    for name in names {
        if let Some(i) = exp.graph.index_of(name) {
            for d in exp.graph.descendants(i) {
                let reason = if d == i {
                    Reason::Forced
                } else {
                    Reason::UpstreamForced {
                        stage: name.clone(),
                    }
                };
                // A stage named itself keeps `Forced` even when it is also downstream of another.
                if reason == Reason::Forced || !out.contains_key(&d) {
                    out.insert(d, reason);
                }
            }
        }
    }
    out
}

/// Runs every stage that is not cached. Stops at the first failure; the outcome says what ran, what was cached
/// and what failed.
pub fn run(
    exp: &Experiment,
    cache: &Cache,
    opts: &Options,
    report_dir: &Path,
    progress: &MultiProgress,
) -> Outcome {
    let forced = forced(exp, &opts.force);
    let mut results: BTreeMap<usize, StageResult> = BTreeMap::new();
    let mut artifacts: HashMap<usize, Arc<Artifact>> = HashMap::new();
    let mut failed = false;
    let say = |line: String| progress.suspend(|| eprintln!("{line}"));

    for &i in exp.graph.order() {
        let spec = &exp.graph.stages[i];
        if failed {
            results.insert(i, StageResult::new(&spec.name, spec.kind(), Status::NotRun));
            continue;
        }
        let result = run_stage(
            exp,
            cache,
            i,
            forced.get(&i),
            &results,
            &mut artifacts,
            report_dir,
            progress,
            &say,
            opts,
        );
        failed = result.status == Status::Failed;
        match result.status {
            Status::Cached if opts.verbose => say(format!("{:>8} {}", "cached", spec.name)),
            Status::Ran => say(format!(
                "{:>8} {} ({:.2}s)",
                "ran", spec.name, result.seconds
            )),
            Status::Failed => say(format!(
                "{:>8} {}: {}",
                "failed",
                spec.name,
                result.error.as_deref().unwrap_or("unknown error")
            )),
            _ => {}
        }
        results.insert(i, result);
    }
    Outcome {
        stages: exp
            .graph
            .order()
            .iter()
            .filter_map(|i| results.remove(i))
            .collect(),
    }
}

#[allow(clippy::too_many_arguments)]
fn run_stage(
    exp: &Experiment,
    cache: &Cache,
    i: usize,
    forced: Option<&Reason>,
    results: &BTreeMap<usize, StageResult>,
    artifacts: &mut HashMap<usize, Arc<Artifact>>,
    report_dir: &Path,
    progress: &MultiProgress,
    say: &dyn Fn(String),
    opts: &Options,
) -> StageResult {
    let spec = &exp.graph.stages[i];
    let mut result = StageResult::new(&spec.name, spec.kind(), Status::Failed);
    let fail = |mut result: StageResult, e: anyhow::Error| {
        result.error = Some(format!("{e:#}"));
        result
    };
    let input_ids = exp.graph.inputs_of(i);
    let inputs: Vec<InputHash> = input_ids
        .iter()
        .map(|j| InputHash {
            stage: exp.graph.stages[*j].name.clone(),
            hash: results[j]
                .record
                .as_ref()
                .expect("inputs ran before")
                .output
                .hash,
        })
        .collect();
    let external = match spec.stage().external_inputs(&exp.base_dir) {
        Ok(x) => x,
        Err(e) => return fail(result, e),
    };
    let fp = fingerprint_of(exp, i, inputs, &external);
    let key = fp.hash();
    result.fingerprint = Some(key);

    let mut reasons = match forced {
        Some(reason) => vec![reason.clone()],
        None => match cache.lookup(&key) {
            Lookup::Hit(record) => {
                if let Err(e) = cache.set_last(&exp.name, &spec.name, &fp) {
                    return fail(result, e);
                }
                result.status = Status::Cached;
                result.record = Some(*record);
                return result;
            }
            Lookup::Miss => miss_reasons(cache, exp, i, &fp),
            Lookup::Damaged(problem) => {
                say(format!(
                    "warning: {}: the cached result was damaged ({problem}); recomputing it",
                    spec.name
                ));
                vec![Reason::EntryMissing]
            }
        },
    };
    if opts.verbose {
        say(format!(
            "{:>8} {}: {}",
            "running",
            spec.name,
            explain(&reasons)
        ));
    }

    let mut loaded = Vec::with_capacity(input_ids.len());
    for j in &input_ids {
        match load(cache, *j, results, artifacts) {
            Ok(a) => loaded.push(a),
            Err(e) => return fail(result, e),
        }
    }
    let refs: Vec<&Artifact> = loaded.iter().map(|a| a.as_ref()).collect();
    // A stage that can continue its previous result (more epochs) gets it.
    let resume = match forced {
        Some(_) => None,
        None => cache
            .last(&exp.name, &spec.name)
            .filter(|old| spec.stage().resumable(old, &fp))
            .and_then(|old| cache.peek(&old.hash()))
            .and_then(|record| cache.load(&record).ok())
            .map(Arc::new),
    };
    let mut ctx = RunContext {
        stage: &spec.name,
        base_dir: &exp.base_dir,
        external: &external,
        progress,
        warnings: Vec::new(),
        report_dir,
        report_prefix: crate::report::file_prefix(exp, &spec.name),
        resume,
    };
    let started = Instant::now();
    let output = match spec.stage().run(&mut ctx, &refs) {
        Ok(o) => o,
        Err(e) => return fail(result, e),
    };
    let seconds = started.elapsed().as_secs_f64();
    let bytes = output.artifact.to_bytes();
    let meta = EntryMeta {
        stage: spec.name.clone(),
        summary: output.summary,
        warnings: std::mem::take(&mut ctx.warnings),
        seconds,
    };
    let record = match cache.store(&fp, &bytes, &output.files, meta, forced.is_some()) {
        Ok(r) => r,
        Err(e) => return fail(result, e),
    };
    if let Err(e) = cache.set_last(&exp.name, &spec.name, &fp) {
        return fail(result, e);
    }
    artifacts.insert(i, Arc::new(output.artifact));
    result.status = Status::Ran;
    result.reasons = std::mem::take(&mut reasons);
    result.record = Some(record);
    result.seconds = seconds;
    result
}

/// An input's artifact: kept in memory if it ran in this process, else read from the cache.
fn load(
    cache: &Cache,
    j: usize,
    results: &BTreeMap<usize, StageResult>,
    artifacts: &mut HashMap<usize, Arc<Artifact>>,
) -> Result<Arc<Artifact>> {
    if let Some(a) = artifacts.get(&j) {
        return Ok(a.clone());
    }
    let record = results[&j].record.as_ref().expect("inputs ran before");
    let artifact = Arc::new(cache.load(record)?);
    artifacts.insert(j, artifact.clone());
    Ok(artifact)
}

/// What `pipeline status` prints for one stage.
#[derive(Debug, Serialize)]
pub struct PlanLine {
    pub name: String,
    pub kind: StageKind,
    pub cached: bool,
    pub fingerprint: Option<Hash>,
    pub reason: String,
}

/// Works out, without running or changing anything, which stages are cached and why the others would run.
pub fn plan(exp: &Experiment, cache: &Cache) -> Vec<PlanLine> {
    let mut hashes: HashMap<usize, Hash> = HashMap::new();
    let mut lines = Vec::new();
    for &i in exp.graph.order() {
        let spec = &exp.graph.stages[i];
        let mut line = PlanLine {
            name: spec.name.clone(),
            kind: spec.kind(),
            cached: false,
            fingerprint: None,
            reason: String::new(),
        };
        let input_ids = exp.graph.inputs_of(i);
        let pending: Vec<&str> = input_ids
            .iter()
            .filter(|j| !hashes.contains_key(j))
            .map(|j| exp.graph.stages[*j].name.as_str())
            .collect();
        if !pending.is_empty() {
            // The input's new output is unknown until it runs; if it comes out identical, this stage stays cached.
            let own: Vec<Reason> = cache
                .last(&exp.name, &spec.name)
                .map(|old| {
                    let mut probe = old.clone();
                    probe.params = spec.stage().params();
                    probe.diff(&old)
                })
                .unwrap_or_default();
            line.reason = if own.is_empty() {
                format!("would run if `{}` changes its output", pending.join("`, `"))
            } else {
                format!("would run: {}", explain(&own))
            };
            lines.push(line);
            continue;
        }
        let inputs = input_ids
            .iter()
            .map(|j| InputHash {
                stage: exp.graph.stages[*j].name.clone(),
                hash: hashes[j],
            })
            .collect();
        let external = match spec.stage().external_inputs(&exp.base_dir) {
            Ok(x) => x,
            Err(e) => {
                line.reason = format!("would fail: {e:#}");
                lines.push(line);
                continue;
            }
        };
        let fp = fingerprint_of(exp, i, inputs, &external);
        let key = fp.hash();
        line.fingerprint = Some(key);
        match cache.peek(&key) {
            Some(record) => {
                line.cached = true;
                line.reason = "cached".into();
                hashes.insert(i, record.output.hash);
            }
            None => {
                line.reason = format!("would run: {}", explain(&miss_reasons(cache, exp, i, &fp)))
            }
        }
        lines.push(line);
    }
    lines
}
