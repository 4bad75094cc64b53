//! `pipeline export mlflow` and `run --export mlflow` against a real MLflow tracking server (`PIPELINE_TEST_MLFLOW`,
//! the `mlflow server` that `.ci/run` installs from PyPI and starts on 127.0.0.1), every value read back through
//! MLflow's own REST API and compared with the report folder; and a screenshot of the run in MLflow's UI.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

/// The tracking server the tests share.
pub fn mlflow_uri() -> Option<String> {
    let uri = std::env::var("PIPELINE_TEST_MLFLOW").ok()?;
    let answers = ureq::get(format!("{uri}/health"))
        .call()
        .is_ok_and(|r| r.status() == 200);
    answers.then_some(uri)
}

/// MLflow's REST API, as a test reads it back.
struct Server {
    uri: String,
}

impl Server {
    fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let mut request = ureq::get(format!("{}{path}", self.uri));
        for (k, v) in query {
            request = request.query(*k, *v);
        }
        let text = request
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .body_mut()
            .read_to_string()
            .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn post(&self, path: &str, body: Value) -> Value {
        let text = ureq::post(format!("{}{path}", self.uri))
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
            .body_mut()
            .read_to_string()
            .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn experiment_id(&self, name: &str) -> String {
        let found = self.get(
            "/api/2.0/mlflow/experiments/get-by-name",
            &[("experiment_name", name)],
        );
        found["experiment"]["experiment_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no MLflow experiment `{name}`: {found}"))
            .to_string()
    }

    /// Every run of the experiment.
    fn runs(&self, experiment: &str) -> Vec<Value> {
        let id = self.experiment_id(experiment);
        let found = self.post(
            "/api/2.0/mlflow/runs/search",
            json!({ "experiment_ids": [id], "max_results": 1000 }),
        );
        found["runs"].as_array().cloned().unwrap_or_default()
    }

    /// The run tagged with the report folder `key`.
    fn run(&self, experiment: &str, key: &str) -> Value {
        let runs: Vec<Value> = self
            .runs(experiment)
            .into_iter()
            .filter(|r| {
                pairs(&r["data"]["tags"])
                    .get("pipeline.key")
                    .map(String::as_str)
                    == Some(key)
            })
            .collect();
        assert_eq!(runs.len(), 1, "one MLflow run for {key}: {runs:#?}");
        runs.into_iter().next().unwrap()
    }

    /// `(step, value)` of every logged value of `key`, by step.
    fn history(&self, run_id: &str, key: &str) -> Vec<(i64, f64)> {
        let h = self.get(
            "/api/2.0/mlflow/metrics/get-history",
            &[("run_id", run_id), ("metric_key", key)],
        );
        let mut points: Vec<(i64, f64)> = h["metrics"]
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|p| (p["step"].as_i64().unwrap(), p["value"].as_f64().unwrap()))
                    .collect()
            })
            .unwrap_or_default();
        points.sort_by(|a, b| a.partial_cmp(b).unwrap());
        points
    }

    /// Artifact name → size.
    fn artifacts(&self, run_id: &str) -> BTreeMap<String, u64> {
        let listed = self.get("/api/2.0/mlflow/artifacts/list", &[("run_id", run_id)]);
        listed["files"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| {
                (
                    f["path"].as_str().unwrap().to_string(),
                    f["file_size"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }

    fn artifact(&self, run_id: &str, name: &str) -> Vec<u8> {
        let mut response = ureq::get(format!("{}/get-artifact", self.uri))
            .query("path", name)
            .query("run_uuid", run_id)
            .call()
            .unwrap();
        response.body_mut().read_to_vec().unwrap()
    }
}

fn pairs(v: &Value) -> BTreeMap<String, String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            (
                i["key"].as_str().unwrap().to_string(),
                i["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn server() -> Option<Server> {
    let present = mlflow_uri();
    available(
        "mlflow",
        present.is_some(),
        "`pip install mlflow`, start `mlflow server --host 127.0.0.1 --port PORT`, then export \
         PIPELINE_TEST_MLFLOW=http://127.0.0.1:PORT",
    )
    .then(|| Server {
        uri: present.expect("present"),
    })
}

/// A name no other test (or earlier CI run on the same server) uses.
fn unique(name: &str) -> String {
    format!(
        "{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// The tiny project, with the experiment named `name`.
fn named_project(name: &str) -> Project {
    let p = tiny_project();
    let text = std::fs::read_to_string(p.path("exp.toml")).unwrap();
    // One of the two files held out, so there are validation losses to export.
    let text = text
        .replacen("name = \"test\"", &format!("name = \"{name}\""), 1)
        .replace("val_fraction = 0.0", "val_fraction = 0.5");
    p.write("exp.toml", text);
    p
}

fn key_of(p: &Project, dir: &Path) -> String {
    dir.strip_prefix(p.path("reports"))
        .unwrap()
        .to_string_lossy()
        .replace('\\', "/")
}

/// The MLflow run holds every value of the report folder `dir`.
fn assert_same_as_report(s: &Server, experiment: &str, key: &str, dir: &Path) -> Value {
    let run = s.run(experiment, key);
    let id = run["info"]["run_id"].as_str().unwrap().to_string();
    let manifest = read_manifest(dir);
    assert_eq!(run["info"]["status"], "FINISHED");

    // Parameters: every stage parameter, flattened, as text.
    let params = pairs(&run["data"]["params"]);
    let mut expected = BTreeMap::new();
    for stage in &manifest.stages {
        for (k, v) in &stage.params {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            expected.insert(format!("{}.{k}", stage.name), text);
        }
    }
    assert!(!expected.is_empty());
    assert_eq!(params, expected);

    // Per-epoch losses, step = epoch, exactly once each.
    let rows = csv_rows(&std::fs::read_to_string(dir.join("loss.csv")).unwrap());
    let header = &rows[0];
    for column in ["train_loss", "val_loss", "val_accuracy"] {
        let c = header.iter().position(|h| h == column).unwrap();
        let want: Vec<(i64, f64)> = rows[1..]
            .iter()
            .filter(|r| !r[c].is_empty())
            .map(|r| (r[0].parse().unwrap(), r[c].parse().unwrap()))
            .collect();
        assert!(!want.is_empty());
        assert_eq!(s.history(&id, column), want, "{column}");
    }

    // The music metrics of the generated piece.
    let metrics: Value =
        serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap();
    let generated = metrics["generated"].as_object().unwrap();
    let mut compared = 0;
    for (name, v) in generated {
        if let Some(v) = v.as_f64() {
            assert_eq!(
                s.history(&id, &format!("music.{name}")),
                vec![(0, v)],
                "music.{name}"
            );
            compared += 1;
        }
    }
    assert!(compared >= 10, "{compared} music metrics");

    // Tags: the run, the tool, every stage's fingerprint.
    let tags = pairs(&run["data"]["tags"]);
    assert_eq!(tags["pipeline.run_id"], manifest.run_id);
    assert_eq!(tags["pipeline.tool_version"], manifest.tool.version);
    assert_eq!(tags["pipeline.export"], "complete");
    for stage in &manifest.stages {
        assert_eq!(
            tags[&format!("pipeline.fingerprint.{}", stage.name)],
            stage.fingerprint.unwrap().hex()
        );
    }

    // Artifacts: every file of the folder, at its size; one downloaded back byte for byte.
    let mut files = BTreeMap::new();
    for item in std::fs::read_dir(dir).unwrap() {
        let item = item.unwrap();
        files.insert(
            item.file_name().to_string_lossy().into_owned(),
            item.metadata().unwrap().len(),
        );
    }
    assert!(files.contains_key("generated.mid") && files.contains_key("manifest.json"));
    assert_eq!(s.artifacts(&id), files);
    assert_eq!(
        s.artifact(&id, "generated.mid"),
        std::fs::read(dir.join("generated.mid")).unwrap()
    );
    run
}

#[test]
fn export_sends_every_value_of_a_run_and_a_second_export_changes_nothing() {
    let Some(s) = server() else { return };
    let name = unique("export");
    let p = named_project(&name);
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    let dir = run.report.clone().unwrap();
    let key = key_of(&p, &dir);
    let out = p
        .pipeline(&["export", "mlflow", "--tracking-uri", &s.uri])
        .ok();
    assert!(
        out.stdout.contains(&format!("created {key} (3 epochs")),
        "{}",
        out.stdout
    );
    let first = assert_same_as_report(&s, &name, &key, &dir);

    // Again, through MLFLOW_TRACKING_URI: nothing new, not one more value.
    let again = p
        .pipeline_with_env(&["export", "mlflow"], &[("MLFLOW_TRACKING_URI", &s.uri)])
        .ok();
    assert!(
        again.stdout.contains(&format!("unchanged {key}")),
        "{}",
        again.stdout
    );
    assert_eq!(s.runs(&name).len(), 1);
    let second = assert_same_as_report(&s, &name, &key, &dir);
    assert_eq!(first["info"]["run_id"], second["info"]["run_id"]);
}

#[test]
fn a_run_exported_while_it_trains_is_completed_by_the_next_export() {
    let Some(s) = server() else { return };
    let name = unique("live");
    // Long enough to be caught mid-way, whatever the machine: 200 epochs over ten files of 600 notes (the tiny
    // project trains 400 epochs in half a second, and could end between the board's epoch 2 and the export).
    let p = crate::interrupt::training_project();
    let text = std::fs::read_to_string(p.path("exp.toml")).unwrap();
    p.write(
        "exp.toml",
        text.replacen("name = \"test\"", &format!("name = \"{name}\""), 1)
            .replace("val_fraction = 0.0", "val_fraction = 0.2")
            .replace("epochs = 40", "epochs = 200"),
    );
    let running = Spawned::start(&p, &["run", "exp.toml"]);
    // Until the board says two epochs are done.
    let started = Instant::now();
    let board = loop {
        let found = walkdir::WalkDir::new(p.path("reports"))
            .into_iter()
            .filter_map(|e| e.ok())
            .find(|e| e.file_name() == "progress.json")
            .and_then(|e| std::fs::read(e.path()).ok())
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        if let Some(b) = found
            && b["points"][0]["epoch"]["epoch"]
                .as_u64()
                .is_some_and(|e| e >= 2)
        {
            break b;
        }
        if started.elapsed() > Duration::from_secs(120) {
            running.signal(libc::SIGKILL);
            panic!("the run never reached epoch 2: {:?}", running.exit());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let key = format!("{name}/{}", board["run_id"].as_str().unwrap());
    let out = p
        .pipeline(&["export", "mlflow", "--tracking-uri", &s.uri])
        .ok();
    assert!(
        out.stdout.contains(&format!("created {key} (")),
        "{}{}",
        out.stdout,
        out.stderr
    );
    let mid = s.run(&name, &key);
    let id = mid["info"]["run_id"].as_str().unwrap().to_string();
    assert_eq!(mid["info"]["status"], "RUNNING");
    assert_eq!(pairs(&mid["data"]["tags"])["pipeline.export"], "partial");
    let logged = s.history(&id, "train_loss").len();
    assert!((2..200).contains(&logged), "{logged} epochs logged mid-way");

    let (code, stdout, stderr) = running.exit();
    assert_eq!(code, 0, "{stderr}");
    let dir = p.path(stdout.lines().last().unwrap().trim());
    let out = p
        .pipeline(&["export", "mlflow", "--tracking-uri", &s.uri])
        .ok();
    assert!(
        out.stdout.contains(&format!("updated {key} (200 epochs")),
        "{}",
        out.stdout
    );
    let done = assert_same_as_report(&s, &name, &key, &dir);
    assert_eq!(
        done["info"]["run_id"],
        id.as_str(),
        "the same MLflow run, completed"
    );
}

#[test]
fn run_with_export_sends_every_sweep_point() {
    let Some(s) = server() else { return };
    let name = unique("sweep");
    let p = named_project(&name);
    let text = std::fs::read_to_string(p.path("exp.toml")).unwrap();
    p.write("exp.toml", text + "\n[sweep]\n\"model.hidden\" = [8, 12]\n");
    let run = p
        .pipeline(&[
            "run",
            "exp.toml",
            "--export",
            "mlflow",
            "--tracking-uri",
            &s.uri,
        ])
        .ok();
    let sweep = p.path(run.stdout.lines().last().unwrap().trim());
    assert!(run.stderr.contains("2 created"), "{}", run.stderr);
    for label in ["hidden=8", "hidden=12"] {
        let dir = sweep.join(label);
        let mlflow_run = assert_same_as_report(&s, &name, &key_of(&p, &dir), &dir);
        assert_eq!(
            pairs(&mlflow_run["data"]["tags"])["pipeline.sweep_label"],
            label
        );
    }
    assert_eq!(s.runs(&name).len(), 2);
}

#[test]
fn export_errors_name_the_server_or_the_folder_and_say_what_to_do() {
    let p = tiny_project();
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    let dir = run.report.clone().unwrap();
    let dir_arg = dir.to_string_lossy().into_owned();

    // Nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nobody = format!("http://127.0.0.1:{port}");
    let out = p.pipeline(&["export", "mlflow", &dir_arg, "--tracking-uri", &nobody]);
    out.fails_with(3, &format!("cannot reach the MLflow server at `{nobody}`"));
    // Credentials in the address are never shown.
    let secret = format!("http://alice:s3cret@127.0.0.1:{port}");
    let out = p.pipeline(&["export", "mlflow", &dir_arg, "--tracking-uri", &secret]);
    out.fails_with(
        3,
        &format!("cannot reach the MLflow server at `http://***@127.0.0.1:{port}`"),
    );
    assert!(
        !out.stderr.contains("s3cret") && !out.stdout.contains("s3cret"),
        "{}",
        out.stderr
    );
    let out = p.pipeline(&[
        "export",
        "mlflow",
        &dir_arg,
        "--tracking-uri",
        "ftp://bob:pw@host/x",
    ]);
    out.fails_with(3, "`ftp://***@host/x` is not the address");
    assert!(!out.stderr.contains("bob:pw"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("hint: is `mlflow server` running there?"),
        "{}",
        out.stderr
    );

    // No server given at all; a folder that is not a report; an address that is not a server's.
    p.pipeline(&["export", "mlflow", &dir_arg])
        .fails_with(2, "no MLflow server given: pass `--tracking-uri");
    p.pipeline(&["export", "mlflow", "nowhere", "--tracking-uri", &nobody])
        .fails_with(2, "`nowhere` is neither a report folder nor an experiment");
    p.pipeline(&[
        "export",
        "mlflow",
        &dir_arg,
        "--tracking-uri",
        "file:///tmp/mlruns",
    ])
    .fails_with(3, "is not the address of an MLflow server");
    p.write("empty/readme.txt", "not a run");
    p.pipeline(&["export", "mlflow", "empty", "--tracking-uri", &nobody])
        .fails_with(2, "no runs under `empty`");

    // `run --export mlflow` without a server fails before anything runs.
    let before = std::fs::read_dir(p.path("reports/test")).unwrap().count();
    p.pipeline(&["run", "exp.toml", "--export", "mlflow"])
        .fails_with(2, "`--export mlflow` needs the server");
    assert_eq!(
        std::fs::read_dir(p.path("reports/test")).unwrap().count(),
        before
    );
}

#[test]
fn a_killed_run_is_skipped_with_a_reason() {
    let Some(s) = server() else { return };
    let name = unique("killed");
    let p = named_project(&name);
    let text = std::fs::read_to_string(p.path("exp.toml")).unwrap();
    p.write("exp.toml", text.replace("epochs = 3", "epochs = 100000"));
    let running = Spawned::start(&p, &["run", "exp.toml", "-v"]);
    running.wait_for("running model");
    std::thread::sleep(Duration::from_millis(300));
    running.signal(libc::SIGKILL);
    let _ = running.exit();
    let out = p
        .pipeline(&["export", "mlflow", "--tracking-uri", &s.uri])
        .ok();
    assert!(
        out.stderr
            .contains("its run stopped before it finished (killed?)"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("0 created"), "{}", out.stderr);
}

#[test]
fn the_exported_run_shows_its_curves_in_the_mlflow_ui() {
    let Some(s) = server() else { return };
    if !require("chromium") {
        return;
    }
    let name = unique("ui");
    let p = named_project(&name);
    let run = p
        .pipeline(&[
            "run",
            "exp.toml",
            "--export",
            "mlflow",
            "--tracking-uri",
            &s.uri,
        ])
        .ok();
    let dir = run.report.clone().unwrap();
    let mlflow_run = s.run(&name, &key_of(&p, &dir));
    let id = mlflow_run["info"]["run_id"].as_str().unwrap();
    let experiment = s.experiment_id(&name);

    let browser = chromium(1600, 1000);
    let tab = browser.new_tab().unwrap();
    tab.navigate_to(&format!(
        "{}/#/experiments/{experiment}/runs/{id}/model-metrics",
        s.uri
    ))
    .unwrap();
    // MLflow's page is an application: wait for its chart search, show the loss curves, wait until they are drawn.
    tab.wait_for_element_with_custom_timeout(
        "input[placeholder*='Search metric']",
        Duration::from_secs(60),
    )
    .expect("MLflow's metric page")
    .click()
    .unwrap();
    tab.type_str("loss").unwrap();
    let started = Instant::now();
    loop {
        let text = tab
            .evaluate("document.body.innerText", false)
            .ok()
            .and_then(|r| r.value)
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        if text.contains("train_loss")
            && text.contains("val_loss")
            && text.contains(&run_id_of(&dir))
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "MLflow's page never showed the run's metrics:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_secs(1));
    save_screenshot(&tab, "mlflow-run.png");
}

fn run_id_of(dir: &Path) -> String {
    read_manifest(dir).run_id
}

/// The MLflow server with MLflow's basic authentication (`--app-name basic-auth`) the tests share, and its
/// admin's name and password: `PIPELINE_TEST_MLFLOW_AUTH`, `…_USER`, `…_PASSWORD`.
pub fn mlflow_auth() -> Option<(String, String, String)> {
    let uri = std::env::var("PIPELINE_TEST_MLFLOW_AUTH").ok()?;
    let user = std::env::var("PIPELINE_TEST_MLFLOW_AUTH_USER").ok()?;
    let password = std::env::var("PIPELINE_TEST_MLFLOW_AUTH_PASSWORD").ok()?;
    let answers = ureq::get(format!("{uri}/health"))
        .call()
        .is_ok_and(|r| r.status() == 200);
    answers.then_some((uri, user, password))
}

#[test]
fn credentials_are_sent_and_a_refusal_says_which_variables_to_set() {
    if !require("mlflow-auth") {
        return;
    }
    let (uri, user, password) = mlflow_auth().expect("present");
    let name = unique("auth");
    let p = named_project(&name);
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    let dir = run.report.clone().unwrap();
    let dir_arg = dir.to_string_lossy().into_owned();

    // No credentials, then wrong ones: refused before anything is sent, and told what to set.
    for env in [
        vec![],
        vec![
            ("MLFLOW_TRACKING_USERNAME", user.as_str()),
            ("MLFLOW_TRACKING_PASSWORD", "wrong"),
        ],
    ] {
        let out = p.pipeline_with_env(
            &["export", "mlflow", &dir_arg, "--tracking-uri", &uri],
            &env,
        );
        out.fails_with(3, "refused the request");
        assert!(out.stderr.contains("HTTP 401"), "{}", out.stderr);
        assert!(
            out.stderr.contains("set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN"),
            "{}",
            out.stderr
        );
    }

    // The right ones: exported, and there when read back with them.
    let env = [
        ("MLFLOW_TRACKING_USERNAME", user.as_str()),
        ("MLFLOW_TRACKING_PASSWORD", password.as_str()),
    ];
    let out = p
        .pipeline_with_env(
            &["export", "mlflow", &dir_arg, "--tracking-uri", &uri],
            &env,
        )
        .ok();
    assert!(out.stdout.contains("created "), "{}", out.stdout);
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    let text = ureq::get(format!("{uri}/api/2.0/mlflow/experiments/get-by-name"))
        .query("experiment_name", &name)
        .header("Authorization", &basic)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let found: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(found["experiment"]["name"], name.as_str(), "{found}");
}

/// A server that accepts connections and never answers: given up in seconds (exit 3, naming it), and Ctrl-C or
/// SIGTERM stops an export waiting on it at once — also the export after a run.
#[test]
fn a_stalled_tracking_server_fails_in_seconds_and_never_holds_an_interrupt() {
    let p = tiny_project();
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    let dir_arg = run.report.clone().unwrap().to_string_lossy().into_owned();
    let stalled = stalled_endpoint();
    for (args, signal) in [
        (vec!["export", "mlflow", dir_arg.as_str()], libc::SIGTERM),
        (vec!["export", "mlflow", dir_arg.as_str()], libc::SIGINT),
        (vec!["run", "exp.toml", "--export", "mlflow"], libc::SIGTERM),
    ] {
        let mut all = args.clone();
        all.extend(["--tracking-uri", stalled.as_str()]);
        let spawned = Spawned::start(&p, &all);
        if args[0] == "run" {
            spawned.wait_for("nothing to do");
        }
        std::thread::sleep(Duration::from_millis(1500));
        let sent = Instant::now();
        spawned.signal(signal);
        let (code, _, stderr) = spawned.exit();
        assert_eq!(code, 130, "{args:?}: {stderr}");
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "{args:?} took {:?} after the signal",
            sent.elapsed()
        );
    }
    let started = Instant::now();
    let out = p.pipeline(&["export", "mlflow", &dir_arg, "--tracking-uri", &stalled]);
    out.fails_with(3, &format!("cannot reach the MLflow server at `{stalled}`"));
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "took {:?}",
        started.elapsed()
    );
}
