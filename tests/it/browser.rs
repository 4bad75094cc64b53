//! The report page in a real browser: headless Chromium opens `reports/index.html` from disk, with no console errors,
//! every image decoded, every audio file playable for the right length, every link leading to a file; a screenshot
//! is kept as a test artifact. Needs Debian's `chromium` (`.ci/run` installs it) and a SoundFont; where no browser
//! can be found the test says so and does nothing.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::support::*;
use headless_chrome::protocol::cdp::types::Event;

/// Evaluates a JavaScript expression that yields a JSON string (awaiting it if it is a promise) and parses it.
fn json(tab: &headless_chrome::Tab, expression: &str) -> serde_json::Value {
    let result = tab
        .evaluate(expression, true)
        .expect("the page runs the check");
    let text = result
        .value
        .expect("a value")
        .as_str()
        .expect("a JSON string")
        .to_string();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn the_report_page_loads_in_chromium_without_errors() {
    if !require("chromium") || !require("soundfont") {
        return;
    }
    let p = tiny_project();
    let text = experiment(TINY, "length = 40\ntemperature = 1.0")
        + "\n[stages.audio]\nkind = \"render\"\ninputs = [\"music\"]\n";
    p.write("exp.toml", text);
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    assert!(
        run.report.as_ref().unwrap().join("generated.wav").is_file(),
        "no audio was rendered; install a SoundFont (`apt install timgm6mb-soundfont`):\n{}",
        run.stderr
    );
    // A second run that differs, and a third that only reproduces the first: two rows, one with a re-run.
    p.pipeline(&["run", "exp.toml", "--set", "model.hidden=12"])
        .ok();
    p.pipeline(&["run", "exp.toml"]).ok();
    let index = p.path("reports/index.html");

    let browser = chromium(1700, 900);
    let tab = browser.new_tab().unwrap();
    let problems: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = problems.clone();
    tab.add_event_listener(Arc::new(move |event: &Event| {
        let problem = match event {
            Event::LogEntryAdded(e) => {
                let level = format!("{:?}", e.params.entry.level);
                (level == "Error").then(|| format!("log: {}", e.params.entry.text))
            }
            Event::RuntimeExceptionThrown(e) => {
                Some(format!("exception: {}", e.params.exception_details.text))
            }
            Event::RuntimeConsoleAPICalled(e) => {
                let kind = format!("{:?}", e.params.Type);
                (kind == "Error" || kind == "Warning")
                    .then(|| format!("console.{kind}: {:?}", e.params.args))
            }
            _ => None,
        };
        if let Some(p) = problem {
            seen.lock().unwrap().push(p);
        }
    }))
    .unwrap();
    tab.enable_log().unwrap();
    tab.enable_runtime().unwrap();
    tab.navigate_to(&format!("file://{}", index.display()))
        .unwrap();
    tab.wait_until_navigated().unwrap();

    // Compact: two rows, the media folded, one chart of both validation losses on top.
    let page = json(
        &tab,
        "JSON.stringify({rows: document.querySelectorAll('table.runs tbody').length,
            open: document.querySelectorAll('details[open]').length,
            details: document.querySelectorAll('tr.media-row details').length,
            curves: document.querySelectorAll('figure.overlay svg polyline').length,
            reruns: Array.from(document.querySelectorAll('td.reruns summary')).map(s => s.textContent)})",
    );
    assert_eq!(page["rows"], 2, "{page}");
    assert_eq!(page["open"], 0, "media folded until asked for: {page}");
    assert_eq!(page["details"], 2, "{page}");
    assert!(page["curves"].as_u64().unwrap() >= 2, "{page}");
    assert_eq!(page["reruns"], serde_json::json!(["1"]), "{page}");

    // Sorting by a column, by clicking its header: ascending, then descending.
    let sorted = |header: &str| {
        json(
            &tab,
            &format!(
                "(() => {{
                    const table = document.querySelector('table.runs');
                    const heads = Array.from(table.querySelectorAll('thead th'));
                    const i = heads.findIndex(h => h.textContent.replace(/[▲▼ ]+$/, '') === '{header}');
                    heads[i].click();
                    return JSON.stringify(Array.from(table.tBodies).map(b => parseFloat(b.rows[0].cells[i].getAttribute('data-v'))));
                }})()"
            ),
        )
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect::<Vec<f64>>()
    };
    let up = sorted("final train loss");
    assert!(up.len() == 2 && up[0] <= up[1], "ascending: {up:?}");
    let down = sorted("final train loss");
    assert!(down[0] >= down[1], "descending: {down:?}");
    let hidden = sorted("model.hidden");
    assert_eq!(
        hidden,
        vec![12.0, 16.0],
        "TINY has 16 hidden units, the second run 12"
    );

    // Asked for: every media row opened, then everything in it must load.
    tab.evaluate(
        "document.querySelectorAll('tr.media-row details').forEach(d => d.open = true)",
        false,
    )
    .unwrap();

    let images = json(
        &tab,
        "Promise.all(Array.from(document.images).map(i => i.complete ? null : new Promise(r => { i.onload = r; i.onerror = r; })))
           .then(() => JSON.stringify(Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth])))",
    );
    let images = images.as_array().unwrap();
    assert!(
        images.len() >= 2,
        "the loss chart and the piano roll: {images:?}"
    );
    for image in images {
        assert!(
            image[1].as_u64().unwrap() > 0,
            "image did not load: {image}"
        );
    }

    let audio = json(
        &tab,
        "Promise.all(Array.from(document.querySelectorAll('audio')).map(a => new Promise(r => {
            const done = () => r([a.getAttribute('src'), a.error ? -1 : a.duration]);
            if (a.readyState >= 1) { done(); return; }
            a.addEventListener('loadedmetadata', done);
            a.addEventListener('error', done);
            a.load();
         }))).then(JSON.stringify)",
    );
    let audio: Vec<(String, f64)> = audio
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a[0].as_str().unwrap().to_string(), a[1].as_f64().unwrap()))
        .collect();
    assert_eq!(audio.len(), 4, "two players per run: {audio:?}");
    // 40 tokens of a quarter second, and the 4-token seed window, each with 2 s of release.
    for (suffix, seconds) in [("generated.wav", 12.0), ("seed.wav", 3.0)] {
        for (src, duration) in audio.iter().filter(|a| a.0.ends_with(suffix)) {
            assert!((duration - seconds).abs() < 0.05, "{src}: {duration} s");
        }
    }

    let links = json(
        &tab,
        "JSON.stringify(Array.from(document.links).map(a => a.href))",
    );
    for link in links.as_array().unwrap() {
        let url = link.as_str().unwrap();
        let path = url.strip_prefix("file://").expect("a file link");
        let path = path.replace("%20", " ");
        assert!(PathBuf::from(&path).exists(), "broken link {url}");
    }

    save_screenshot(&tab, "report-page.png");

    let problems = problems.lock().unwrap();
    assert!(problems.is_empty(), "console problems: {problems:#?}");
}
