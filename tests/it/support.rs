//! Test harness: a temporary project directory, MIDI files written with midly, and the real `pipeline` binary.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use midly::num::{u4, u7, u15, u24, u28};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};
pub use pipeline::Status;
pub use pipeline::{Manifest, RunStatus, StageEntry};

/// One event of a test MIDI track, on an absolute tick.
#[derive(Clone, Copy, Debug)]
pub enum Ev {
    On {
        tick: u32,
        ch: u8,
        key: u8,
        vel: u8,
    },
    Off {
        tick: u32,
        ch: u8,
        key: u8,
    },
    Program {
        tick: u32,
        ch: u8,
        program: u8,
    },
    /// A track name, to change bytes without changing notes.
    Name {
        tick: u32,
        text: &'static str,
    },
    /// A tempo: microseconds per quarter note.
    Tempo {
        tick: u32,
        micros: u32,
    },
}

impl Ev {
    fn tick(&self) -> u32 {
        match *self {
            Ev::On { tick, .. }
            | Ev::Off { tick, .. }
            | Ev::Program { tick, .. }
            | Ev::Name { tick, .. }
            | Ev::Tempo { tick, .. } => tick,
        }
    }
}

/// A note of `len` ticks on channel `ch`.
pub fn note(tick: u32, ch: u8, key: u8, len: u32) -> [Ev; 2] {
    [
        Ev::On {
            tick,
            ch,
            key,
            vel: 100,
        },
        Ev::Off {
            tick: tick + len,
            ch,
            key,
        },
    ]
}

/// A melody of one note per beat (480 ticks) on channel `ch`.
pub fn melody(ch: u8, keys: &[u8]) -> Vec<Ev> {
    keys.iter()
        .enumerate()
        .flat_map(|(i, &k)| note(i as u32 * 480, ch, k, 240))
        .collect()
}

/// The bytes of a format-1 SMF with these tracks.
pub fn smf_bytes(tracks: &[Vec<Ev>]) -> Vec<u8> {
    let tracks: Vec<Vec<TrackEvent<'static>>> = tracks
        .iter()
        .map(|events| {
            let mut events = events.clone();
            events.sort_by_key(Ev::tick);
            let mut last = 0;
            let mut out: Vec<TrackEvent<'static>> = events
                .iter()
                .map(|e| {
                    let delta = u28::new(e.tick() - last);
                    last = e.tick();
                    let kind = match *e {
                        Ev::On { ch, key, vel, .. } => TrackEventKind::Midi {
                            channel: u4::new(ch),
                            message: MidiMessage::NoteOn {
                                key: u7::new(key),
                                vel: u7::new(vel),
                            },
                        },
                        Ev::Off { ch, key, .. } => TrackEventKind::Midi {
                            channel: u4::new(ch),
                            message: MidiMessage::NoteOff {
                                key: u7::new(key),
                                vel: u7::new(0),
                            },
                        },
                        Ev::Program { ch, program, .. } => TrackEventKind::Midi {
                            channel: u4::new(ch),
                            message: MidiMessage::ProgramChange {
                                program: u7::new(program),
                            },
                        },
                        Ev::Name { text, .. } => {
                            TrackEventKind::Meta(MetaMessage::TrackName(text.as_bytes()))
                        }
                        Ev::Tempo { micros, .. } => {
                            TrackEventKind::Meta(MetaMessage::Tempo(u24::new(micros)))
                        }
                    };
                    TrackEvent { delta, kind }
                })
                .collect();
            out.push(TrackEvent {
                delta: u28::new(0),
                kind: TrackEventKind::Meta(MetaMessage::EndOfTrack),
            });
            out
        })
        .collect();
    let smf = Smf {
        header: Header::new(Format::Parallel, Timing::Metrical(u15::new(480))),
        tracks,
    };
    let mut bytes = Vec::new();
    smf.write_std(&mut bytes).expect("writing to memory");
    bytes
}

/// A temporary directory holding an experiment, its MIDI files, its cache and its reports.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A project under `parent` (the Slurm tests keep theirs under `target/tmp`, beside the binary the jobs run).
    pub fn new_in(parent: &Path) -> Self {
        std::fs::create_dir_all(parent).unwrap();
        Self {
            dir: tempfile::tempdir_in(parent).expect("temp dir"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) -> &Self {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        self
    }

    pub fn midi(&self, rel: &str, tracks: &[Vec<Ev>]) -> &Self {
        self.write(rel, smf_bytes(tracks))
    }

    /// Runs `pipeline ARGS` in the project directory.
    pub fn pipeline(&self, args: &[&str]) -> Run {
        self.pipeline_with_env(args, &[])
    }

    /// Runs `pipeline ARGS` in the project directory, and returns with it the peak resident memory of that process
    /// alone (from `wait4`, not the whole test binary's children, which include other tests' Chromium).
    pub fn pipeline_measured(&self, args: &[&str]) -> (Run, u64) {
        use std::os::unix::process::ExitStatusExt;
        let out = tempfile::tempfile().unwrap();
        let err = tempfile::tempfile().unwrap();
        #[expect(
            clippy::zombie_processes,
            reason = "reaped by wait4 below, which also reads its rusage"
        )]
        let child = self
            .command(args)
            .stdout(out.try_clone().unwrap())
            .stderr(err.try_clone().unwrap())
            .spawn()
            .expect("the pipeline binary runs");
        let mut status = 0;
        // SAFETY: wait4 only writes the status and the struct it is given, for a child this test started.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
        assert_eq!(pid, child.id() as i32);
        let read = |mut f: std::fs::File| {
            use std::io::{Read, Seek};
            let mut bytes = Vec::new();
            f.seek(std::io::SeekFrom::Start(0)).unwrap();
            f.read_to_end(&mut bytes).unwrap();
            bytes
        };
        let output = Output {
            status: std::process::ExitStatus::from_raw(status),
            stdout: read(out),
            stderr: read(err),
        };
        (
            Run::new(output, self.dir.path()),
            usage.ru_maxrss as u64 * 1024,
        )
    }

    /// `pipeline ARGS` in the project directory, without the caller's PIPELINE_* directories and colours.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pipeline"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("PIPELINE_CACHE")
            .env_remove("PIPELINE_REPORTS")
            .env_remove("PIPELINE_REMOTE")
            .env("NO_COLOR", "1");
        command
    }

    /// Runs `pipeline ARGS` in the project directory with extra environment variables.
    pub fn pipeline_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let output = self
            .command(args)
            .envs(env.iter().copied())
            .output()
            .expect("the pipeline binary runs");
        Run::new(output, self.dir.path())
    }
}

/// The result of one invocation.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub report: Option<PathBuf>,
}

impl Run {
    fn new(output: Output, dir: &Path) -> Self {
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let report = stdout
            .lines()
            .last()
            .map(|l| dir.join(l.trim()))
            .filter(|p| p.join("manifest.json").exists());
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            report,
        }
    }

    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "pipeline failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts the exit code and that stderr says `needle`.
    #[track_caller]
    pub fn fails_with(&self, code: i32, needle: &str) -> &Self {
        assert_eq!(self.code, code, "exit code; stderr:\n{}", self.stderr);
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }

    pub fn manifest(&self) -> Manifest {
        read_manifest(self.report.as_ref().expect("the run wrote a report"))
    }

    pub fn report_file(&self, name: &str) -> String {
        std::fs::read_to_string(self.report.as_ref().expect("a report").join(name)).unwrap()
    }

    /// The trained weights in the report.
    pub fn weights(&self) -> Vec<u8> {
        std::fs::read(
            self.report
                .as_ref()
                .expect("a report")
                .join("model.safetensors"),
        )
        .unwrap()
    }

    /// `loss.csv` without its timing column (timings differ from run to run).
    pub fn losses(&self) -> Vec<Vec<String>> {
        csv_rows(&self.report_file("loss.csv"))
            .into_iter()
            .map(|row| row[..4].to_vec())
            .collect()
    }

    /// Names of the stages with this status (`ran`, `cached`, …), in run order.
    pub fn stages(&self, status: &str) -> Vec<String> {
        self.manifest()
            .stages
            .iter()
            .filter(|s| s.status.is_some_and(|st| status_name(st) == status))
            .map(|s| s.name.clone())
            .collect()
    }

    pub fn stage(&self, name: &str) -> StageEntry {
        stage_in(&self.manifest(), name).clone()
    }
}

/// A stage status as the manifest spells it (`ran`, `not_run`).
pub fn status_name(status: Status) -> String {
    serde_json::to_value(status)
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

/// The `manifest.json` of a report folder, read with the type every reader of the format uses.
pub fn read_manifest(dir: &Path) -> Manifest {
    Manifest::read(dir).unwrap_or_else(|e| panic!("{e:#}"))
}

/// A stage's entry in a manifest.
pub fn stage_in<'a>(manifest: &'a Manifest, name: &str) -> &'a StageEntry {
    manifest
        .stage(name)
        .unwrap_or_else(|| panic!("no stage `{name}` in the manifest"))
}

/// A stage's summary as JSON (`Null` when it has none): each stage kind has its own shape.
pub trait SummaryJson {
    fn summary(&self) -> &serde_json::Value;
}

impl SummaryJson for StageEntry {
    fn summary(&self) -> &serde_json::Value {
        self.summary.as_ref().unwrap_or(&serde_json::Value::Null)
    }
}

/// The whole MIDI pipeline over `midi/`, as in the README.
pub const PIPELINE_TOML: &str = r#"
name = "test"

[stages.source]
kind = "midi_source"
path = "midi"

[stages.no_drums]
kind = "drop_drums"
inputs = ["source"]

[stages.melody]
kind = "extract_instrument"
inputs = ["no_drums"]
top = 1

[stages.tokens]
kind = "tokenize"
inputs = ["melody"]

[stages.vocab]
kind = "vocab"
inputs = ["tokens"]

[stages.windows]
kind = "window"
inputs = ["vocab"]
seq_len = 4
val_fraction = 0.0
seed = 42
"#;

/// [`PIPELINE_TOML`] over two short melodies.
pub fn midi_project() -> Project {
    let p = Project::new();
    p.write("exp.toml", PIPELINE_TOML);
    p.midi(
        "midi/a.mid",
        &[melody(0, &[60, 62, 64, 65, 67, 69, 71, 72])],
    );
    p.midi(
        "midi/b.mid",
        &[melody(0, &[72, 71, 69, 67, 65, 64, 62, 60, 59])],
    );
    p
}

pub const ALL_STAGES: [&str; 6] = ["source", "no_drums", "melody", "tokens", "vocab", "windows"];

/// CSV text → rows of fields, header included.
pub fn csv_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// The MIDI stages plus a tiny `train` and `sample`.
pub fn experiment(train: &str, sample: &str) -> String {
    format!(
        "{PIPELINE_TOML}
[stages.model]
kind = \"train\"
inputs = [\"windows\"]
device = \"cpu\"
{train}

[stages.music]
kind = \"sample\"
inputs = [\"model\"]
{sample}
"
    )
}

pub const TINY: &str = "layers = 1\nhidden = 16\ndense = 8\ndropout = 0.1\ninput = \"embedding\"\nembed_dim = 4\n\
                    epochs = 3\nbatch_size = 8\nseed = 1";

pub fn tiny_project() -> Project {
    tiny_project_in(Project::new())
}

/// [`tiny_project`]'s files in a given project.
pub fn tiny_project_in(p: Project) -> Project {
    p.midi(
        "midi/a.mid",
        &[melody(
            0,
            &[
                60, 62, 64, 65, 67, 65, 64, 62, 60, 62, 64, 65, 67, 69, 71, 72,
            ],
        )],
    );
    p.midi(
        "midi/b.mid",
        &[melody(0, &[72, 71, 69, 67, 65, 64, 62, 60, 62, 64, 65, 67])],
    );
    p.write("exp.toml", experiment(TINY, "length = 20\nseed = 3"));
    p
}

/// A General MIDI SoundFont: `$PIPELINE_SOUNDFONT`, else the first of the system's usual places.
pub fn soundfont_path() -> Option<PathBuf> {
    std::env::var_os("PIPELINE_SOUNDFONT")
        .map(PathBuf::from)
        .or_else(|| {
            pipeline::render::SYSTEM_SOUNDFONTS
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
        })
}

/// A Chromium to drive: `$PIPELINE_CHROMIUM`, else one on the `PATH`.
pub fn chromium_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PIPELINE_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .filter_map(|name| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
        .next()
}

/// Headless Chromium with a window of `width` × `height` (the tests that need it check `require("chromium")` first).
pub fn chromium(width: u32, height: u32) -> headless_chrome::Browser {
    let options = headless_chrome::LaunchOptions::default_builder()
        .path(Some(chromium_path().expect("present")))
        .sandbox(false)
        .enable_gpu(false)
        .window_size(Some((width, height)))
        .build()
        .unwrap();
    headless_chrome::Browser::new(options).expect("Chromium starts")
}

/// Takes a screenshot of `tab` and keeps it as a test artifact, `target/tmp/artifacts/<name>`.
pub fn save_screenshot(tab: &headless_chrome::Tab, name: &str) {
    use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .unwrap();
    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join(name);
    std::fs::write(&shot, &png).unwrap();
    eprintln!("screenshot: {}", shot.display());
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
}

/// Whether a Slurm cluster answers (`sinfo` lists a node).
pub fn slurm_up() -> bool {
    Command::new("sinfo")
        .args(["-h", "-o", "%t"])
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty())
}

/// Whether this process may mount file systems (a tmpfs for the full-disk tests): root.
pub fn can_mount() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// An optional requirement of the suite: its `PIPELINE_TEST_REQUIRE` name, whether it is here, which tests need it
/// and how to get it.
pub type Requirement = (&'static str, fn() -> bool, &'static str, &'static str);

/// Every optional requirement of the suite.
pub const REQUIREMENTS: &[Requirement] = &[
    (
        "soundfont",
        || soundfont_path().is_some(),
        "the render:: and browser:: tests",
        "`apt install timgm6mb-soundfont`, or set PIPELINE_SOUNDFONT",
    ),
    (
        "chromium",
        || chromium_path().is_some(),
        "the browser:: tests",
        "install Debian's `chromium`, or set PIPELINE_CHROMIUM",
    ),
    (
        "slurm",
        slurm_up,
        "the slurm:: tests",
        "start a cluster with `.ci/slurm.sh up DIR` and run the `export` line it prints",
    ),
    (
        "mount",
        can_mount,
        "the full_disk:: tests",
        "run the tests as root: they mount small tmpfs file systems",
    ),
    (
        "s3",
        s3_up,
        "the remote::s3_ tests",
        "`pip install 'moto[server]'`, start `moto_server -H 127.0.0.1 -p PORT`, then export \
         PIPELINE_TEST_S3=http://127.0.0.1:PORT and PIPELINE_TEST_MOTO_SERVER=$(command -v moto_server)",
    ),
    (
        "mlflow",
        || crate::mlflow::mlflow_uri().is_some(),
        "the mlflow:: tests",
        "`pip install mlflow`, start `mlflow server --host 127.0.0.1 --port PORT`, then export \
         PIPELINE_TEST_MLFLOW=http://127.0.0.1:PORT",
    ),
    (
        "mlflow-auth",
        || crate::mlflow::mlflow_auth().is_some(),
        "the mlflow::credentials_ test",
        "`pip install 'mlflow[auth]'`, start `mlflow server --app-name basic-auth` with MLFLOW_AUTH_ADMIN_PASSWORD \
         set, then export PIPELINE_TEST_MLFLOW_AUTH=http://127.0.0.1:PORT, PIPELINE_TEST_MLFLOW_AUTH_USER=admin and \
         PIPELINE_TEST_MLFLOW_AUTH_PASSWORD",
    ),
    (
        "pty",
        || find_on_path("script").is_some(),
        "the live:: test of the board on a terminal",
        "install util-linux, whose `script` runs the binary under a pseudo-terminal",
    ),
    (
        "python3",
        || find_on_path("python3").is_some(),
        "the ngram:: check against bench/kneser_ney.py",
        "install Python 3 (any 3.8 or newer; the script uses only its standard library)",
    ),
    (
        "taplo",
        || taplo_path().is_some(),
        "the schema::taplo_ test",
        "`npm install --prefix DIR @taplo/cli` (or `cargo install taplo-cli`), then put `taplo` on PATH or set \
         PIPELINE_TEST_TAPLO to it",
    ),
];

/// `name` in one of PATH's directories.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The `taplo` CLI (Even Better TOML's engine): `$PIPELINE_TEST_TAPLO`, else `taplo` on PATH.
pub fn taplo_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PIPELINE_TEST_TAPLO") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("taplo"))
            .find(|p| p.is_file())
    })
}

/// How many epochs a run said it resumed after (`resuming from the N epochs already trained`).
#[track_caller]
pub fn resumed_after(stderr: &str) -> usize {
    stderr
        .split("resuming from the ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("the run did not resume:\n{stderr}"))
}

/// `(name, value)` pairs as `pipeline_with_env` and `Spawned::start_with_env` take them.
pub fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The S3 server the tests share (`PIPELINE_TEST_S3`, a moto server `.ci/run` starts), if it answers, and the
/// `moto_server` program (`PIPELINE_TEST_MOTO_SERVER`) for the tests that start and stop one of their own.
pub fn s3_up() -> bool {
    let Ok(endpoint) = std::env::var("PIPELINE_TEST_S3") else {
        return false;
    };
    let moto =
        std::env::var_os("PIPELINE_TEST_MOTO_SERVER").is_some_and(|m| Path::new(&m).is_file());
    moto && http_request(&endpoint, "GET", "/", b"").is_some()
}

/// One plain HTTP/1.1 request to `endpoint` (`http://127.0.0.1:PORT`): the status code and body. moto accepts
/// unsigned requests, so the tests create buckets and damage objects through it without an S3 client.
pub fn http_request(
    endpoint: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> Option<(u16, Vec<u8>)> {
    http_request_with(endpoint, method, path, body, "")
}

/// [`http_request`] with more header lines (`headers`: each ending in `\r\n`).
pub fn http_request_with(
    endpoint: &str,
    method: &str,
    path: &str,
    body: &[u8],
    headers: &str,
) -> Option<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let host = endpoint.strip_prefix("http://")?.trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text_end = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status = std::str::from_utf8(&response[..text_end])
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((status, response[text_end + 4..].to_vec()))
}

/// A bucket of its own on an S3 server, and the environment a `pipeline` process needs to reach it.
pub struct Bucket {
    pub endpoint: String,
    pub name: String,
}

impl Bucket {
    /// A fresh bucket on the shared server, or `None` (the test then skips) where there is none.
    pub fn shared() -> Option<Self> {
        if !require("s3") {
            return None;
        }
        Some(Self::on(&std::env::var("PIPELINE_TEST_S3").unwrap()))
    }

    /// A fresh bucket on the server at `endpoint`.
    pub fn on(endpoint: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!(
            "t{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let (status, body) =
            http_request(endpoint, "PUT", &format!("/{name}"), b"").expect("the S3 server answers");
        assert_eq!(
            status,
            200,
            "creating bucket {name}: {}",
            String::from_utf8_lossy(&body)
        );
        Self {
            endpoint: endpoint.to_string(),
            name,
        }
    }

    /// The remote URL the tests pass: a prefix inside the bucket, as a team would use one.
    pub fn url(&self) -> String {
        format!("s3://{}/team", self.name)
    }

    /// The variables a user sets for a plain-http S3-compatible server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        s3_env(&self.endpoint)
    }

    /// Every object key under the bucket's `team/` prefix.
    pub fn keys(&self) -> Vec<String> {
        let (status, body) = http_request(
            &self.endpoint,
            "GET",
            &format!("/{}?list-type=2&prefix=team/&max-keys=1000", self.name),
            b"",
        )
        .expect("the S3 server answers");
        assert_eq!(status, 200);
        let text = String::from_utf8_lossy(&body);
        text.split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }

    /// Deletes the object `key` (moto refuses an anonymous delete: any signature-shaped header will do).
    pub fn delete(&self, key: &str) {
        let auth = "Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, \
                    SignedHeaders=host, Signature=0\r\n";
        let (status, body) = http_request_with(
            &self.endpoint,
            "DELETE",
            &format!("/{}/{key}", self.name),
            b"",
            auth,
        )
        .expect("the S3 server answers");
        assert_eq!(
            status,
            204,
            "DELETE {key}: {}",
            String::from_utf8_lossy(&body)
        );
    }

    pub fn get(&self, key: &str) -> Vec<u8> {
        let (status, body) =
            http_request(&self.endpoint, "GET", &format!("/{}/{key}", self.name), b"")
                .expect("the S3 server answers");
        assert_eq!(status, 200, "GET {key}");
        body
    }

    pub fn put(&self, key: &str, bytes: &[u8]) {
        let (status, _) = http_request(
            &self.endpoint,
            "PUT",
            &format!("/{}/{key}", self.name),
            bytes,
        )
        .expect("the S3 server answers");
        assert_eq!(status, 200, "PUT {key}");
    }
}

/// A moto server of a test's own, on a free port, stopped when dropped (or earlier, with [`Moto::stop`]).
pub struct Moto {
    child: Option<Child>,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Self {
        let program = std::env::var("PIPELINE_TEST_MOTO_SERVER")
            .expect("s3 is required before starting moto");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let endpoint = format!("http://127.0.0.1:{port}");
        let started = std::time::Instant::now();
        while http_request(&endpoint, "GET", "/", b"").is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto_server never answered"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child: Some(child),
            endpoint,
        }
    }

    /// Stops the server: every request after this fails to connect.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One integration test, as `#[test]` (the `it-collect` crate) registers it.
pub struct Test {
    /// `module_path!()` where it is written: `it::cache`.
    pub module: &'static str,
    pub name: &'static str,
    pub run: fn(),
}

inventory::collect!(Test);

thread_local! {
    /// Why the test running on this thread skipped, once [`available`] found something missing.
    static SKIPPED: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// The tests that skipped in this run, with their reasons, for the closing summary.
static SKIPS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// Every registered test as a trial, named `module::name` as the standard harness names them, in name order. A test
/// that returns after [`available`] said no ends ignored, with the reason.
pub fn trials() -> Vec<libtest_mimic::Trial> {
    let mut tests: Vec<(String, fn())> = inventory::iter::<Test>
        .into_iter()
        .map(|t| {
            let module = t.module.split_once("::").map_or("", |(_, rest)| rest);
            let name = if module.is_empty() {
                t.name.to_string()
            } else {
                format!("{module}::{}", t.name)
            };
            (name, t.run)
        })
        .collect();
    tests.sort_by(|a, b| a.0.cmp(&b.0));
    tests
        .into_iter()
        .map(|(name, run)| {
            let label = name.clone();
            libtest_mimic::Trial::ignorable_test(name, move || {
                SKIPPED.with(|s| s.borrow_mut().take());
                run();
                Ok(match SKIPPED.with(|s| s.borrow_mut().take()) {
                    Some(reason) => {
                        lock(&SKIPS).push((label, reason.clone()));
                        libtest_mimic::Completion::ignored_with(reason)
                    }
                    None => libtest_mimic::Completion::Completed,
                })
            })
        })
        .collect()
}

/// After the summary: how many tests skipped, each with what it needs and how to get it, so the last lines of
/// `cargo test` say what this machine did not test.
pub fn say_skips() {
    let mut skips = lock(&SKIPS).clone();
    if skips.is_empty() {
        return;
    }
    skips.sort();
    println!(
        "{} test(s) skipped: something they need is missing here (PIPELINE_TEST_REQUIRE makes that a failure):",
        skips.len()
    );
    for (name, reason) in skips {
        println!("  {name}: {reason}");
    }
}

/// [`available`] for one of [`REQUIREMENTS`], probed.
pub fn require(what: &str) -> bool {
    let (_, present, _, how) = REQUIREMENTS
        .iter()
        .find(|r| r.0 == what)
        .unwrap_or_else(|| panic!("`{what}` is not in REQUIREMENTS"));
    available(what, present(), how)
}

/// The names `PIPELINE_TEST_REQUIRE` lists.
pub fn required() -> Vec<String> {
    std::env::var("PIPELINE_TEST_REQUIRE")
        .unwrap_or_default()
        .split(',')
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .collect()
}

/// Whether a test that needs something from the system (a SoundFont, Chromium, a Slurm cluster) can run. Where it is
/// missing the test says so and does nothing, unless `PIPELINE_TEST_REQUIRE` lists it (`.ci/run` sets
/// `soundfont,chromium,slurm`): then its absence is a failure, so CI can never pass by skipping.
///
/// The harness then reports the test ignored with the reason (see [`trials`]), and lists it again after the summary,
/// instead of counting it as a pass.
pub fn available(what: &str, present: bool, how: &str) -> bool {
    if present {
        return true;
    }
    if required().iter().any(|r| r == what) {
        panic!("{what} is required here (PIPELINE_TEST_REQUIRE) but missing: {how}");
    }
    SKIPPED.with(|s| *s.borrow_mut() = Some(format!("needs {what}: {how}")));
    false
}

/// `pipeline ARGS` in the background, its stderr read as it comes, so a test waits for what the binary says (with
/// `-v` it prints `running model` once it holds the training's lock) instead of sleeping or probing locks itself.
pub struct Spawned {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// Everything it printed on stderr so far.
    pub stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Spawned {
    pub fn start(p: &Project, args: &[&str]) -> Self {
        Self::start_with_env(p, args, &[])
    }

    /// [`Spawned::start`] with extra environment variables.
    pub fn start_with_env(p: &Project, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = p
            .command(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the pipeline binary runs");
        let (tx, lines) = mpsc::channel();
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("piped");
        let all = stderr.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                all.lock().unwrap().push_str(&(line.clone() + "\n"));
                let _ = tx.send(line);
            }
        });
        Self {
            child,
            lines,
            stderr,
            reader: Some(reader),
        }
    }

    /// Blocks until the process prints a line containing `needle`, and returns that line.
    #[track_caller]
    pub fn wait_for(&self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(180)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "the process never said {needle:?}:\n{}",
                    self.stderr.lock().unwrap()
                ),
            }
        }
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling a child this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// Waits for the exit: (exit code, or -1 when killed by a signal; stdout; all of stderr).
    pub fn exit(mut self) -> (i32, String, String) {
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            std::io::Read::read_to_string(&mut out, &mut stdout).unwrap();
        }
        let status = self.child.wait().unwrap();
        // The pipe closes when the process exits, so the reader has everything once it ends.
        self.reader.take().unwrap().join().unwrap();
        let stderr = self.stderr.lock().unwrap().clone();
        (status.code().unwrap_or(-1), stdout, stderr)
    }
}

/// `http://127.0.0.1:PORT` of a server that accepts connections and never answers (a stalled remote or tracking
/// server), for the life of the test process.
pub fn stalled_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        // Held, never read or answered.
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    endpoint
}

/// `http://127.0.0.1:PORT` of a proxy to the HTTP server at `upstream` that holds (never answers, never forwards)
/// every request whose request line contains `hold`, and forwards the others: a remote that stalls on one kind of
/// request, e.g. the parts of a multipart upload.
pub fn holding_proxy(upstream: &str, hold: &'static str) -> String {
    slow_proxy(upstream, move |line, _| line.contains(hold), None).0
}

/// `http://127.0.0.1:PORT` of a proxy to the HTTP server at `upstream` that forwards each request on a connection
/// of its own, holding those that `matches` (given the request line and the body) for `delay` first (`None`: for
/// ever); and the count of requests that matched so far, to see where a client is.
pub fn slow_proxy(
    upstream: &str,
    matches: impl Fn(&str, &[u8]) -> bool + Send + Sync + 'static,
    delay: Option<Duration>,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let upstream = upstream.trim_start_matches("http://").to_string();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let matched = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let matches = std::sync::Arc::new(matches);
    let count = matched.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let (upstream, held, matches, count) = (
                upstream.clone(),
                held.clone(),
                matches.clone(),
                count.clone(),
            );
            std::thread::spawn(move || {
                let mut client = client;
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let length: usize = text
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                let mut body = vec![0u8; length];
                if client.read_exact(&mut body).is_err() {
                    return;
                }
                if text.lines().next().is_some_and(|l| matches(l, &body)) {
                    count.fetch_add(1, Ordering::SeqCst);
                    match delay {
                        None => {
                            held.lock().unwrap().push(client);
                            return;
                        }
                        Some(d) => std::thread::sleep(d),
                    }
                }
                // One request per upstream connection: the client is told to close, so it never sends a second
                // request down a connection this proxy has stopped reading.
                let head: String = text
                    .trim_end()
                    .lines()
                    .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
                    .map(|l| format!("{l}\r\n"))
                    .collect::<String>()
                    + "Connection: close\r\n\r\n";
                let Ok(mut server) = std::net::TcpStream::connect(&upstream) else {
                    return;
                };
                let _ = server.write_all(head.as_bytes());
                let _ = server.write_all(&body);
                let mut answer = Vec::new();
                let _ = server.read_to_end(&mut answer);
                let _ = client.write_all(&answer);
            });
        }
    });
    (endpoint, matched)
}

/// The variables a user sets for a plain-http S3-compatible server at `endpoint` (the test server takes any
/// credentials).
pub fn s3_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

/// The value behind a mutex that a panicking test may have poisoned (the data stays whole: each lock pushes or reads).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
