//! `reports/index.html`: a static page (no server, no JavaScript) listing every run with its parameters, losses,
//! loss chart and files, rewritten after every run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

use crate::runs::compare::{RunSummary, cell, find_file, runs_under, varying_params};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin-bottom:2em}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;\
text-align:left}th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}\
.failed{color:#b00}.pruned{color:#888}.winner{font-weight:bold}img{width:240px;background:#fff}img.roll{width:420px}ul{margin:0;padding-left:1.2em}\
audio{width:300px;display:block;margin-bottom:6px}.caption{font-size:85%;color:#555;margin:2px 0}\
.media{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}ul.files{columns:2}\
dl{margin:0;display:grid;grid-template-columns:auto auto;gap:0 8px;font-size:90%}dt{white-space:nowrap}dd{margin:0}";

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

/// Writes `index.html` into `reports_dir` and returns its path.
pub fn write(reports_dir: &Path) -> Result<PathBuf> {
    let runs: Vec<RunSummary> = runs_under(reports_dir)
        .iter()
        .filter_map(|d| RunSummary::read(d, reports_dir).ok())
        .collect();
    let mut by_experiment: BTreeMap<&str, Vec<&RunSummary>> = BTreeMap::new();
    for r in &runs {
        by_experiment.entry(&r.experiment).or_default().push(r);
    }
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>pipeline runs</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n<h1>pipeline runs</h1>\n<p>{} runs of {} experiments. Each row \
         links to its report folder; charts show validation loss solid and training loss dashed.</p>\n",
        runs.len(),
        by_experiment.len()
    );
    for (experiment, runs) in &by_experiment {
        let mut runs = runs.clone();
        runs.sort_by(|a, b| b.started.cmp(&a.started));
        let varying = if runs.len() > 1 {
            varying_params(&runs)
        } else {
            Vec::new()
        };
        let _ = write!(
            html,
            "<h2 id=\"{}\">{}</h2>\n<table>\n<tr><th>run</th><th>started</th><th>status</th>",
            attr(experiment),
            text(experiment)
        );
        for p in &varying {
            let _ = write!(html, "<th>{}</th>", text(p));
        }
        html.push_str(
            "<th>epochs</th><th>final train loss</th><th>final val loss</th><th>best val loss</th>\
             <th>val accuracy</th><th>loss chart</th></tr>\n",
        );
        for r in &runs {
            let link = href(&r.dir, reports_dir);
            // A pruned search's trial says how it ended; the best is marked.
            let (status, status_class) = match &r.trial {
                Some(t) if t.winner => (format!("{} ★ best", t.status()), " class=\"winner\""),
                Some(t) => (
                    t.status(),
                    if matches!(t.fate, crate::runs::asha::Fate::Complete { .. }) {
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
                "<tr><td><a href=\"{}/\">{}</a></td><td>{}</td><td{status_class} title=\"{}\">{}</td>",
                attr(&link),
                text(
                    r.id.strip_prefix(&format!("{experiment}/"))
                        .unwrap_or(&r.id)
                ),
                text(&r.started.get(..19).unwrap_or(&r.started).replace('T', " ")),
                attr(r.trial.as_ref().map_or("", |t| t.explanation.as_str())),
                text(&status)
            );
            for p in &varying {
                let _ = write!(
                    html,
                    "<td>{}</td>",
                    text(&r.params.get(p).map(cell).unwrap_or_default())
                );
            }
            let last = r.history.last();
            let num = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_default();
            let _ = write!(
                html,
                "<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td>",
                last.map(|l| l.epoch.to_string()).unwrap_or_default(),
                num(last.map(|l| l.train_loss)),
                num(last.and_then(|l| l.val_loss)),
                num(r.best_val_loss()),
                num(last.and_then(|l| l.val_accuracy)),
            );
            let chart = r.dir.join("loss.svg");
            if chart.is_file() {
                let _ = write!(
                    html,
                    "<td><a href=\"{0}\"><img src=\"{0}\" alt=\"loss curves of {1}\"></a></td>",
                    attr(&href(&chart, reports_dir)),
                    attr(r.name())
                );
            } else {
                html.push_str("<td></td>");
            }
            html.push_str("</tr>\n");
            // The piece, its audio, its metrics and every file, in a full-width row under the figures.
            let _ = write!(
                html,
                "<tr><td colspan=\"{}\"><div class=\"media\">",
                9 + varying.len()
            );
            media(&mut html, r, reports_dir);
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
            html.push_str("</ul></div></div></td></tr>\n");
        }
        html.push_str("</table>\n");
    }
    html.push_str("</body>\n</html>\n");
    let path = reports_dir.join("index.html");
    // Renamed into place whole: two runs finishing together each write a whole page.
    crate::paths::write_atomic(&path, &[html.as_bytes()], false)?;
    Ok(path)
}

/// The piano roll, audio players and music metrics of a run, each in a box of the media row (none where the run has
/// none).
fn media(html: &mut String, r: &RunSummary, reports_dir: &Path) {
    if let Some(roll) = find_file(&r.dir, "generated.svg") {
        let _ = write!(
            html,
            "<div><div class=\"caption\">generated piece (the seed window in blue)</div><a href=\"{0}\">\
             <img class=\"roll\" src=\"{0}\" alt=\"piano roll of the piece {1} generated\"></a>",
            attr(&href(&roll, reports_dir)),
            attr(r.name())
        );
        if let Some(reference) = find_file(&r.dir, "reference.svg") {
            let _ = write!(
                html,
                "<div class=\"caption\"><a href=\"{}\">training data for comparison</a></div>",
                attr(&href(&reference, reports_dir))
            );
        }
        html.push_str("</div>");
    }
    let players: Vec<(PathBuf, &str)> = [
        ("generated.wav", "listen: generated"),
        ("seed.wav", "the seed (the training excerpt it began from)"),
    ]
    .into_iter()
    .filter_map(|(file, caption)| Some((find_file(&r.dir, file)?, caption)))
    .collect();
    if !players.is_empty() {
        html.push_str("<div>");
        for (path, caption) in players {
            let _ = write!(
                html,
                "<div class=\"caption\">{}</div><audio controls preload=\"metadata\" src=\"{}\"></audio>",
                text(caption),
                attr(&href(&path, reports_dir))
            );
        }
        html.push_str("</div>");
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
            let _ = write!(
                html,
                "<dt>{}</dt><dd>{}{}</dd>",
                text(&name.replace('_', " ")),
                text(&cell(&value)),
                text(&beside)
            );
        }
        html.push_str("</dl></div>");
    }
}
