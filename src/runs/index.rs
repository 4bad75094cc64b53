//! `reports/index.html`: a static page (no server; a few lines of inline JavaScript sort its tables, so it works
//! opened from disk) comparing the runs of each experiment: the runs in progress, one chart of every run's
//! validation loss, a table of runs with their parameters and losses whose media (piece, audio, charts, files) fold
//! out on demand, re-runs counted under the run they reproduced. Rewritten when a run starts, every few seconds as it
//! goes (epochs included, on a thread of its own) and when it ends; each time only the running experiment's part is
//! made again, the others' are kept in `reports/.index/`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

use crate::runs::compare::{RunSummary, cell, find_file, rerun_groups, runs_under, varying_params};
use crate::runs::progress::{self, Followed};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin-bottom:2em}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;\
text-align:left}th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}\
.failed{color:#b00}.pruned{color:#888}.winner{font-weight:bold}img{width:240px;background:#fff}img.roll{width:420px}ul{margin:0;padding-left:1.2em}\
audio{width:300px;display:block;margin-bottom:6px}.caption{font-size:85%;color:#555;margin:2px 0}\
.media{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}ul.files{columns:2}\
dl{margin:0;display:grid;grid-template-columns:auto auto;gap:0 8px;font-size:90%}dt{white-space:nowrap}dd{margin:0}thead th{cursor:pointer;user-select:none}th[aria-sort=ascending]::after{content:' ▲'}th[aria-sort=descending]::after{content:' ▼'}tr.media-row td{border-top:none;padding:2px 8px}tr.media-row summary{cursor:pointer;color:#555;font-size:85%}figure.overlay{margin:0 0 1em 0}figure.overlay svg{max-width:900px;width:100%;height:auto}.live{margin:0 0 1em 0}.live pre{margin:4px 0 0 0;font-size:85%}.badge{background:#e8f0fe;color:#1a56c4;padding:1px 6px;border-radius:8px;font-size:85%}.stopped .badge{background:#fdecea;color:#b00}";

/// A link target relative to the reports directory, with `/` separators and spaces escaped.
fn href(path: &Path, reports_dir: &Path) -> String {
    let rel = path.strip_prefix(reports_dir).unwrap_or(path);
    rel.components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .replace('%', "%25")
                .replace(' ', "%20")
                .replace('#', "%23")
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn files_of(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Sorts a table's runs (one `<tbody>` each: the row and its folded media) by the clicked column, numbers as
/// numbers (a cell's `data-v` when it has one); a second click reverses. Inline, so the page works opened from disk.
const SORT_SCRIPT: &str = "document.querySelectorAll('table.runs').forEach(function (table) {\n\
  var heads = table.querySelectorAll('thead th');\n\
  heads.forEach(function (th, i) {\n\
    th.addEventListener('click', function () {\n\
      var desc = th.getAttribute('aria-sort') === 'ascending';\n\
      heads.forEach(function (h) { h.removeAttribute('aria-sort'); });\n\
      th.setAttribute('aria-sort', desc ? 'descending' : 'ascending');\n\
      var key = function (body) {\n\
        var cell = body.rows[0].cells[i];\n\
        var v = cell.getAttribute('data-v');\n\
        return v === null ? cell.textContent.trim() : v;\n\
      };\n\
      var bodies = Array.prototype.slice.call(table.tBodies);\n\
      var numeric = bodies.every(function (b) { var k = key(b); return k === '' || !isNaN(parseFloat(k)); });\n\
      var value = function (b) { var k = key(b); return numeric ? (k === '' ? Infinity : parseFloat(k)) : k; };\n\
      bodies.sort(function (a, b) {\n\
        var x = value(a), y = value(b);\n\
        var r = numeric ? (x === y ? 0 : (x < y ? -1 : 1)) : x.localeCompare(y);\n\
        return desc ? -r : r;\n\
      });\n\
      bodies.forEach(function (b) { table.appendChild(b); });\n\
    });\n\
  });\n\
});\n";

/// Seconds between reloads of the page while a run is in progress.
const REFRESH_SECONDS: u32 = 10;

/// Where the page's parts are kept, one per experiment folder (`reports/.index/<folder>.html`), so that a run
/// rewrites only its own experiment's part and the page is put together from the others as they are.
const PARTS: &str = ".index";

/// One experiment folder's part of the page, and what the page's opening line counts of it.
struct Part {
    html: String,
    runs: usize,
    experiments: usize,
    running: usize,
}

impl Part {
    /// The first line of a kept part: `<!-- part runs=3 experiments=1 running=0 -->`.
    fn header(&self) -> String {
        format!(
            "<!-- part runs={} experiments={} running={} -->\n",
            self.runs, self.experiments, self.running
        )
    }

    /// A kept part, untrusted: one whose first line does not read as [`Part::header`] writes it is none.
    fn parse(text: &str) -> Option<Self> {
        let (first, html) = text.split_once('\n')?;
        let fields = first.strip_prefix("<!-- part ")?.strip_suffix(" -->")?;
        let mut counts = fields
            .split(' ')
            .map(|f| f.split_once('=')?.1.parse::<usize>().ok());
        let (runs, experiments, running) = (counts.next()??, counts.next()??, counts.next()??);
        Some(Self {
            html: html.to_string(),
            runs,
            experiments,
            running,
        })
    }
}

/// Writes `index.html` into `reports_dir` and returns its path: per experiment, the runs in progress, one chart of
/// every run's validation loss, and a table sortable by any column whose media rows fold out on demand; a run that
/// only reproduced an earlier one (nothing computed, the same fingerprints) is counted as its re-run, not listed
/// again. Only the experiment folder `folder` (where a run writes) is read again: every other experiment's part is
/// the one kept from when it last changed (made again when its folder changed since, or none is kept), so a run's
/// cost of keeping the page fresh does not grow with the project's history.
pub fn update(reports_dir: &Path, folder: &str) -> Result<PathBuf> {
    let parts = folders(reports_dir)
        .into_iter()
        .map(|f| match f == folder {
            true => fresh_part(reports_dir, &f),
            false => kept_part(reports_dir, &f).map_or_else(|| fresh_part(reports_dir, &f), Ok),
        })
        .collect::<Result<Vec<_>>>()?;
    assemble(reports_dir, &parts)
}

/// The experiment folders under `reports_dir`, sorted (the page's parts and the kept parts' folder aside).
fn folders(reports_dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(reports_dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|name| !name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The kept part of `folder`, if there is one newer than the folder itself (a run added or removed since changes
/// the folder's time).
fn kept_part(reports_dir: &Path, folder: &str) -> Option<Part> {
    let path = reports_dir.join(PARTS).join(format!("{folder}.html"));
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if modified(&path)? <= modified(&reports_dir.join(folder))? {
        return None;
    }
    Part::parse(&std::fs::read_to_string(path).ok()?)
}

/// The part of `folder`, made from its runs and its live boards, and kept for the next [`update`].
fn fresh_part(reports_dir: &Path, folder: &str) -> Result<Part> {
    let dir = reports_dir.join(folder);
    let runs: Vec<RunSummary> = runs_under(&dir)
        .iter()
        .filter_map(|d| RunSummary::read(d, reports_dir).ok())
        .collect();
    let live: Vec<Followed> = progress::under(&dir)
        .iter()
        .filter_map(|d| progress::read(d))
        // A point's folder of a finished run has its manifest; a board left beside one is stale.
        .filter(|f| !f.dir.join(crate::runs::manifest::MANIFEST).is_file())
        .collect();
    let mut by_experiment: BTreeMap<&str, (Vec<&RunSummary>, Vec<&Followed>)> = BTreeMap::new();
    for r in &runs {
        by_experiment.entry(&r.experiment).or_default().0.push(r);
    }
    for f in &live {
        by_experiment
            .entry(&f.progress.experiment)
            .or_default()
            .1
            .push(f);
    }
    let mut html = String::new();
    for (experiment, (runs, live)) in &by_experiment {
        experiment_section(&mut html, experiment, runs, live, reports_dir)?;
    }
    let part = Part {
        html,
        runs: runs.len(),
        experiments: by_experiment.len(),
        running: live.iter().filter(|f| f.alive).count(),
    };
    let kept = reports_dir.join(PARTS);
    std::fs::create_dir_all(&kept)?;
    crate::paths::write_atomic(
        &kept.join(format!("{folder}.html")),
        &[part.header().as_bytes(), part.html.as_bytes()],
        false,
    )?;
    Ok(part)
}

/// `1 run of 1 experiment`, `5 runs of 2 experiments`.
fn counted(runs: usize, experiments: usize) -> String {
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!(
        "{} of {}",
        plural(runs, "run", "runs"),
        plural(experiments, "experiment", "experiments")
    )
}

/// The page from its parts, renamed into place whole: two runs finishing together each write a whole page.
fn assemble(reports_dir: &Path, parts: &[Part]) -> Result<PathBuf> {
    let sum = |f: fn(&Part) -> usize| parts.iter().map(f).sum::<usize>();
    let (runs, experiments, running) =
        (sum(|p| p.runs), sum(|p| p.experiments), sum(|p| p.running));
    let mut html = String::new();
    let refresh = if running > 0 {
        format!("<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\n")
    } else {
        String::new()
    };
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n{refresh}<title>pipeline runs</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n<h1>pipeline runs</h1>\n<p>{}{}. Click a \
         column to sort by it; each run's piece, audio, loss chart and files fold out under its row.</p>\n",
        counted(runs, experiments),
        match running {
            0 => String::new(),
            n => format!(
                ", {n} in progress (this page reloads every {REFRESH_SECONDS} s while any is)"
            ),
        }
    );
    for part in parts {
        html.push_str(&part.html);
    }
    let _ = write!(html, "<script>\n{SORT_SCRIPT}</script>\n</body>\n</html>\n");
    let path = reports_dir.join("index.html");
    crate::paths::write_atomic(&path, &[html.as_bytes()], false)?;
    Ok(path)
}

/// One experiment's section: its runs in progress, the overlay of its runs' losses, the seed table and the runs'
/// table.
fn experiment_section(
    html: &mut String,
    experiment: &str,
    runs: &[&RunSummary],
    live: &[&Followed],
    reports_dir: &Path,
) -> Result<()> {
    let _ = writeln!(
        html,
        "<h2 id=\"{}\">{}</h2>",
        attr(experiment),
        text(experiment)
    );
    for f in live {
        in_progress(html, f, reports_dir);
    }
    if runs.is_empty() {
        return Ok(());
    }
    let mut originals: Vec<(&RunSummary, Vec<&RunSummary>)> = rerun_groups(runs)
        .into_iter()
        .map(|(o, reruns)| (runs[o], reruns.into_iter().map(|r| runs[r]).collect()))
        .collect();
    let shown: Vec<&RunSummary> = originals.iter().map(|(r, _)| *r).collect();
    let varying = if shown.len() > 1 {
        varying_params(&shown)
    } else {
        Vec::new()
    };
    overlay(html, experiment, &shown, &varying)?;
    seed_table(html, &shown);
    html.push_str("<table class=\"runs\">\n<thead><tr><th>run</th><th>started</th><th>status</th>");
    for p in &varying {
        let _ = write!(html, "<th>{}</th>", text(p));
    }
    html.push_str(
        "<th>epochs</th><th>final train loss</th><th>final val loss</th><th>best val loss</th>\
         <th>val accuracy</th><th>re-runs</th></tr></thead>\n",
    );
    originals.reverse();
    for (r, reruns) in &originals {
        row(html, experiment, r, reruns, &varying, reports_dir);
    }
    html.push_str("</table>\n");
    Ok(())
}

/// A run in progress: its totals and a line per running (or failed) point, as `pipeline ps` shows them; or a run
/// that was stopped before it could finish.
fn in_progress(html: &mut String, f: &Followed, reports_dir: &Path) {
    let p = &f.progress;
    let link = href(&f.dir, reports_dir);
    if f.alive {
        let lines = p.lines(jiff::Timestamp::now());
        let _ = writeln!(
            html,
            "<div class=\"live\"><span class=\"badge\">in progress</span> <a href=\"{}/\">{}</a>: {} point{}, {}\
             {}</div>",
            attr(&link),
            text(&p.run_id),
            p.points.len(),
            if p.points.len() == 1 { "" } else { "s" },
            text(&p.totals().to_string()),
            if lines.is_empty() {
                String::new()
            } else {
                format!("<pre>{}</pre>", text(&lines.join("\n")))
            }
        );
    } else {
        let _ = writeln!(
            html,
            "<div class=\"live stopped\"><span class=\"badge\">stopped</span> <a href=\"{}/\">{}</a> ended before \
             it finished (killed?); its folder keeps what it wrote, and running it again resumes it</div>",
            attr(&link),
            text(&p.run_id)
        );
    }
}

/// One chart of every shown run's validation loss, named by the parameters that differ (or the run).
fn overlay(
    html: &mut String,
    experiment: &str,
    runs: &[&RunSummary],
    varying: &[String],
) -> Result<()> {
    let label = |r: &RunSummary| {
        if varying.is_empty() {
            r.name().to_string()
        } else {
            r.label_by(varying)
        }
    };
    // A configuration trained with several seeds is one curve, their mean, in a band of its 95 % interval.
    let seeds: Vec<&String> = runs.iter().flat_map(|r| &r.seed_keys).collect();
    let configuration: Vec<String> = varying
        .iter()
        .filter(|k| !seeds.contains(k))
        .cloned()
        .collect();
    let mut curves: Vec<(String, Vec<crate::artifact::EpochStats>)> = Vec::new();
    let mut bands = Vec::new();
    for group in crate::runs::repeats::groups(runs) {
        let members: Vec<&RunSummary> = group
            .iter()
            .map(|&i| runs[i])
            .filter(|r| !r.history.is_empty())
            .collect();
        match members[..] {
            [] => {}
            [one] => curves.push((label(one), one.history.clone())),
            _ => {
                let (curve, band) = crate::runs::repeats::mean_curve(&members);
                let name = if configuration.is_empty() {
                    members[0].experiment.clone()
                } else {
                    members[0].label_by(&configuration)
                };
                bands.push(crate::music::plot::Band {
                    curve: curves.len(),
                    points: band,
                });
                curves.push((format!("{name} (mean of {} seeds)", members.len()), curve));
            }
        }
    }
    if curves.is_empty() {
        return Ok(());
    }
    let svg = crate::music::plot::val_loss_chart(
        &format!("{experiment}: validation loss"),
        &curves,
        &crate::runs::compare::floors(runs.iter().copied()),
        &bands,
    )?;
    // Inline, without the XML declaration a document inside HTML must not have.
    let svg = svg
        .trim_start()
        .strip_prefix("<?xml")
        .and_then(|rest| rest.split_once("?>").map(|(_, svg)| svg))
        .unwrap_or(&svg);
    let _ = writeln!(html, "<figure class=\"overlay\">{svg}</figure>");
    Ok(())
}

/// The columns of the configurations table, after the run's name and the varied parameters.
const SEED_COLUMNS: [&str; 9] = [
    "n",
    "seeds",
    "vs_lowest",
    "best_val_loss",
    "floor_val_loss",
    "val_loss_vs_floor",
    "best_val_bits_per_onset",
    "scale_consistency",
    "copy_rate_8",
];

/// Where configurations were trained with several seeds (`[sweep] repeat`): one row each, every figure its mean
/// ± 95 % interval over the seeds, the configuration whose held-out loss cannot be told from the lowest's marked.
fn seed_table(html: &mut String, runs: &[&RunSummary]) {
    let owned: Vec<RunSummary> = runs.iter().map(|r| (*r).clone()).collect();
    let Some(folded) = crate::runs::repeats::fold(&crate::runs::compare::table(&owned), &owned)
    else {
        return;
    };
    let n = folded.columns.iter().position(|c| c == "n").unwrap_or(1);
    let shown: Vec<usize> = (0..n)
        .chain(
            SEED_COLUMNS
                .iter()
                .filter_map(|c| folded.columns.iter().position(|x| x == c)),
        )
        .collect();
    html.push_str(
        "<p>Seeds of one configuration, folded: mean ± 95 % interval (Student's t). A configuration marked \
         <em>overlaps lowest</em> cannot be told apart from the lowest by its held-out loss.</p>\n\
         <table class=\"runs seeds\">\n<thead><tr>",
    );
    for &c in &shown {
        let _ = write!(html, "<th>{}</th>", text(&folded.columns[c]));
    }
    html.push_str("</tr></thead>\n<tbody>\n");
    for row in &folded.rows {
        html.push_str("<tr>");
        for &c in &shown {
            let v = &row[c];
            let sort = v
                .as_f64()
                .or_else(|| v.get("mean").and_then(|m| m.as_f64()))
                .map(|x| format!(" data-v=\"{x}\""))
                .unwrap_or_default();
            let _ = write!(html, "<td{sort}>{}</td>", text(&cell(v)));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</tbody></table>\n");
}

/// A run's row (sortable cells; numbers carry their exact value in `data-v`) and, folded, its media.
fn row(
    html: &mut String,
    experiment: &str,
    r: &RunSummary,
    reruns: &[&RunSummary],
    varying: &[String],
    reports_dir: &Path,
) {
    run_cells(html, experiment, r, varying, reports_dir);
    loss_cells(html, r);
    reruns_cell(html, reruns, reports_dir);
    html.push_str("</tr>\n");
    media_row(html, r, varying.len(), reports_dir);
}

/// The row's first cells: the run (a link), when it started, how it ended, and the parameters that vary.
fn run_cells(
    html: &mut String,
    experiment: &str,
    r: &RunSummary,
    varying: &[String],
    reports_dir: &Path,
) {
    let link = href(&r.dir, reports_dir);
    // A pruned search's trial says how it ended; the best is marked.
    let (status, status_class) = match &r.trial {
        Some(t) if t.winner => (format!("{} ★ best", t.status()), " class=\"winner\""),
        Some(t) => (
            t.status(),
            if matches!(t.fate, crate::runs::manifest::Fate::Complete { .. }) {
                ""
            } else {
                " class=\"pruned\""
            },
        ),
        None if r.status == "ok" => (r.status.clone(), ""),
        None => (r.status.clone(), " class=\"failed\""),
    };
    let _ = write!(
        html,
        "<tbody>\n<tr class=\"run\"><td><a href=\"{}/\">{}</a></td><td>{}</td><td{status_class} title=\"{}\">{}</td>",
        attr(&link),
        text(
            r.id.strip_prefix(&format!("{experiment}/"))
                .unwrap_or(&r.id)
        ),
        text(&r.started.get(..19).unwrap_or(&r.started).replace('T', " ")),
        attr(r.trial.as_ref().map_or("", |t| t.explanation.as_str())),
        text(&status)
    );
    for p in varying {
        let value = r.params.get(p);
        let sort = value
            .and_then(|v| v.as_f64())
            .map(|v| format!(" data-v=\"{v}\""))
            .unwrap_or_default();
        let _ = write!(
            html,
            "<td{sort}>{}</td>",
            text(&value.map(cell).unwrap_or_default())
        );
    }
}

/// The last epoch's losses and accuracy, and the best validation loss.
fn loss_cells(html: &mut String, r: &RunSummary) {
    let last = r.history.last();
    let num = |v: Option<f64>| match v {
        Some(v) => format!("<td class=\"num\" data-v=\"{v}\">{v:.4}</td>"),
        None => "<td class=\"num\"></td>".to_string(),
    };
    let _ = write!(
        html,
        "<td class=\"num\">{}</td>{}{}{}{}",
        last.map(|l| l.epoch.to_string()).unwrap_or_default(),
        num(last.map(|l| l.train_loss)),
        num(last.and_then(|l| l.val_loss)),
        num(r.best_val_loss()),
        num(last.and_then(|l| l.val_accuracy)),
    );
}

/// How many later runs computed nothing and reproduced this one, with links to them.
fn reruns_cell(html: &mut String, reruns: &[&RunSummary], reports_dir: &Path) {
    if reruns.is_empty() {
        html.push_str("<td class=\"num\" data-v=\"0\"></td>");
    } else {
        let _ = write!(
            html,
            "<td class=\"num reruns\" data-v=\"{0}\" title=\"runs that computed nothing and reproduced this one\">\
             <details><summary>{0}</summary>",
            reruns.len()
        );
        for rerun in reruns {
            let _ = write!(
                html,
                "<a href=\"{}/\">{}</a><br>",
                attr(&href(&rerun.dir, reports_dir)),
                text(
                    rerun
                        .started
                        .get(..19)
                        .unwrap_or(&rerun.started)
                        .replace('T', " ")
                        .as_str()
                )
            );
        }
        html.push_str("</details></td>");
    }
}

/// The row under the run's row, folded: its piece, audio, loss chart, metrics and files.
fn media_row(html: &mut String, r: &RunSummary, varying: usize, reports_dir: &Path) {
    // The piece, its audio, its loss chart, its metrics and every file, folded under the row until asked for.
    let _ = write!(
        html,
        "<tr class=\"media-row\"><td colspan=\"{}\"><details><summary>piece, audio, loss chart, metrics and \
         files</summary><div class=\"media\">",
        9 + varying
    );
    media(html, r, reports_dir);
    let chart = r.dir.join("loss.svg");
    if chart.is_file() {
        let _ = write!(
            html,
            "<div><div class=\"caption\">loss (validation solid, training dashed)</div><a href=\"{0}\"><img \
             src=\"{0}\" alt=\"loss curves of {1}\"></a></div>",
            attr(&href(&chart, reports_dir)),
            attr(r.name())
        );
    }
    html.push_str("<div><div class=\"caption\">files</div><ul class=\"files\">");
    for f in files_of(&r.dir) {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let _ = write!(
            html,
            "<li><a href=\"{}\">{}</a></li>",
            attr(&href(&f, reports_dir)),
            text(&name)
        );
    }
    html.push_str("</ul></div></div></details></td></tr>\n</tbody>\n");
}

/// Every piece's piano roll and audio player, the seed's audio and the music metrics of a run, each in a box of the
/// media row (none where the run has none).
fn media(html: &mut String, r: &RunSummary, reports_dir: &Path) {
    let piece_file =
        |n: usize, ext: &str| find_file(&r.dir, &crate::artifact::piece_file("generated", n, ext));
    let pieces = (1..)
        .map(|n| (n, piece_file(n, "svg"), piece_file(n, "wav")))
        .take_while(|(_, svg, wav)| svg.is_some() || wav.is_some());
    for (n, svg, wav) in pieces {
        html.push_str("<div>");
        if let Some(roll) = svg {
            let caption = match n {
                1 => "generated piece (the seed window in blue)".to_string(),
                n => format!("piece {n}"),
            };
            let _ = write!(
                html,
                "<div class=\"caption\">{}</div><a href=\"{1}\"><img class=\"roll\" src=\"{1}\" \
                 alt=\"piano roll of piece {2} of {3}\"></a>",
                text(&caption),
                attr(&href(&roll, reports_dir)),
                n,
                attr(r.name())
            );
        }
        if let Some(wav) = wav {
            let _ = write!(
                html,
                "<div class=\"caption\">listen: piece {n}</div><audio controls preload=\"metadata\" src=\"{}\"></audio>",
                attr(&href(&wav, reports_dir))
            );
        }
        if n == 1
            && let Some(reference) = find_file(&r.dir, "reference.svg")
        {
            let _ = write!(
                html,
                "<div class=\"caption\"><a href=\"{}\">training data for comparison</a></div>",
                attr(&href(&reference, reports_dir))
            );
        }
        html.push_str("</div>");
    }
    if let Some(seed) = find_file(&r.dir, "seed.wav") {
        let _ = write!(
            html,
            "<div><div class=\"caption\">the seed (the training excerpt piece 1 began from)</div>\
             <audio controls preload=\"metadata\" src=\"{}\"></audio></div>",
            attr(&href(&seed, reports_dir))
        );
    }
    if let Some(m) = &r.metrics {
        html.push_str("<div><div class=\"caption\">music metrics</div><dl>");
        let references: Vec<(&str, Vec<(&str, serde_json::Value)>)> = r
            .references
            .iter()
            .map(|(name, m)| (*name, crate::music::metrics::columns(m)))
            .collect();
        for (i, (name, value)) in crate::music::metrics::columns(m).into_iter().enumerate() {
            // Beside each number, the references' (where they have one): a number means little alone.
            let beside: Vec<String> = references
                .iter()
                .filter_map(|(reference, columns)| {
                    let v = &columns[i].1;
                    (!v.is_null()).then(|| format!("{reference} {}", cell(v)))
                })
                .collect();
            let beside = if beside.is_empty() {
                String::new()
            } else {
                format!(" ({})", beside.join(", "))
            };
            // Every piece's value, where the run sampled several: one piece's number can be luck.
            let pieces: Vec<String> = std::iter::once(cell(&value))
                .chain(
                    r.piece_metrics
                        .iter()
                        .map(|m| cell(&crate::music::metrics::columns(m)[i].1)),
                )
                .collect();
            let shown = if pieces.len() > 1 {
                format!("{} (pieces 1–{})", pieces.join(" · "), pieces.len())
            } else {
                pieces.join("")
            };
            let _ = write!(
                html,
                "<dt>{}</dt><dd>{}{}</dd>",
                text(&name.replace('_', " ")),
                text(&shown),
                text(&beside)
            );
        }
        html.push_str("</dl></div>");
    }
}
