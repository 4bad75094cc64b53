//! Charts as SVG (plotters): loss charts (one curve pair per run, validation solid and training dashed, in one
//! colour) and piano rolls of token sequences.

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use plotters::series::DashedLineSeries;

use crate::artifact::EpochStats;

/// Colour-blind-friendly palette (Okabe–Ito), then plotters' own.
const COLOURS: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(240, 228, 66),
];

fn colour(i: usize) -> RGBColor {
    if i < COLOURS.len() {
        COLOURS[i]
    } else {
        let (r, g, b) = Palette99::pick(i).to_backend_color().rgb;
        RGBColor(r, g, b)
    }
}

/// Draws the legend in the upper right corner and completes the picture.
fn finish<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    root: &DrawingArea<DB, plotters::coord::Shift>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// A horizontal line across a loss chart: the held-out loss of a model every curve is measured against.
#[derive(Debug, Clone, PartialEq)]
pub struct Floor {
    pub label: String,
    pub loss: f64,
}

/// An SVG chart of the loss curves of `runs` (label, history): validation solid, training dashed; each of
/// `floors` a dotted grey line.
pub fn loss_chart(
    title: &str,
    runs: &[(String, Vec<EpochStats>)],
    floors: &[Floor],
) -> Result<String> {
    loss_chart_faded(title, runs, &[], floors)
}

/// [`loss_chart`], with the runs `faded` marks (a pruned search's trials) drawn pale and thin, so the trials that
/// trained to the end stand out.
pub fn loss_chart_faded(
    title: &str,
    runs: &[(String, Vec<EpochStats>)],
    faded: &[bool],
    floors: &[Floor],
) -> Result<String> {
    chart_of(title, runs, faded, true, (floors, &[]))
}

/// A shaded interval around one curve of a chart (a configuration's mean over seeds): per epoch, low and high.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    /// The curve it surrounds (its index among the chart's runs, for its colour).
    pub curve: usize,
    pub points: Vec<(usize, f64, f64)>,
}

/// The validation loss of every run in one chart (the training loss, dashed, only for a run without validation):
/// the overlay at the top of an experiment's section of the index page. `bands` shade the 95 % interval around the
/// curves that are means over seeds.
pub fn val_loss_chart(
    title: &str,
    runs: &[(String, Vec<EpochStats>)],
    floors: &[Floor],
    bands: &[Band],
) -> Result<String> {
    chart_of(title, runs, &[], false, (floors, bands))
}

fn chart_of(
    title: &str,
    runs: &[(String, Vec<EpochStats>)],
    faded: &[bool],
    with_train: bool,
    (floors, bands): (&[Floor], &[Band]),
) -> Result<String> {
    // Which runs draw their training line: all of them, or only those with no validation line to draw.
    let train_line = |h: &[EpochStats]| with_train || h.iter().all(|e| e.val_loss.is_none());
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 540)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
        let epochs = runs
            .iter()
            .flat_map(|(_, h)| h.iter().map(|e| e.epoch))
            .max()
            .unwrap_or(1)
            .max(2);
        let (lo, hi) = loss_range(runs, &train_line, floors, bands);
        let pad = (hi - lo) * 0.05;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(1f64..epochs as f64, (lo - pad).max(0.0)..hi + pad)
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_labels(epochs.min(12))
            .x_label_formatter(&|x| {
                if x.fract() == 0.0 {
                    format!("{x:.0}")
                } else {
                    String::new()
                }
            })
            .x_desc("epoch")
            .y_desc(if with_train {
                "loss (validation solid, training dashed)"
            } else if runs.iter().any(|(_, h)| train_line(h)) {
                "validation loss (dashed: training loss of runs without validation)"
            } else {
                "validation loss"
            })
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        draw_bands(&mut chart, bands)?;
        draw_runs(&mut chart, runs, faded, &train_line)?;
        draw_floors(&mut chart, floors, epochs)?;
        finish(&mut chart, &root)?;
    }
    Ok(svg)
}

/// The lowest and highest loss the chart draws: the lines, the floors and the bands.
fn loss_range(
    runs: &[(String, Vec<EpochStats>)],
    train_line: &dyn Fn(&[EpochStats]) -> bool,
    floors: &[Floor],
    bands: &[Band],
) -> (f64, f64) {
    let losses: Vec<f64> = runs
        .iter()
        .flat_map(|(_, h)| {
            let train = train_line(h);
            h.iter()
                .flat_map(move |e| [Some(e.train_loss).filter(|_| train), e.val_loss])
        })
        .flatten()
        .chain(floors.iter().map(|f| f.loss))
        .chain(
            bands
                .iter()
                .flat_map(|b| b.points.iter().flat_map(|p| [p.1, p.2])),
        )
        .filter(|v| v.is_finite())
        .collect();
    let lo = losses.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = losses.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if lo.is_finite() {
        (lo.min(hi - 1e-3), hi)
    } else {
        (0.0, 1.0)
    }
}

/// Each run's validation line (solid) and, where `train_line` says, its training line (dashed); faded runs pale.
fn draw_runs(
    chart: &mut LossChart<'_, '_>,
    runs: &[(String, Vec<EpochStats>)],
    faded: &[bool],
    train_line: &dyn Fn(&[EpochStats]) -> bool,
) -> Result<()> {
    for (i, (label, history)) in runs.iter().enumerate() {
        let pale = faded.get(i).copied().unwrap_or(false);
        let c = colour(i).mix(if pale { 0.3 } else { 1.0 });
        let width = if pale { 1 } else { 2 };
        let train: Vec<(f64, f64)> = history
            .iter()
            .map(|e| (e.epoch as f64, e.train_loss))
            .collect();
        let val: Vec<(f64, f64)> = history
            .iter()
            .filter_map(|e| e.val_loss.map(|v| (e.epoch as f64, v)))
            .collect();
        if train_line(history) {
            chart
                .draw_series(DashedLineSeries::new(train, 6, 4, c.stroke_width(width)))
                .map_err(|e| anyhow!("{e}"))?;
        }
        // The legend names each run once, on its solid (validation) line, or its training line without one.
        let series = if val.is_empty() {
            chart.draw_series(std::iter::empty::<PathElement<(f64, f64)>>())
        } else {
            chart.draw_series(LineSeries::new(val, c.stroke_width(width)))
        }
        .map_err(|e| anyhow!("{e}"))?;
        series.label(label.clone()).legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(width))
        });
    }
    Ok(())
}

/// The chart type the loss charts draw on.
type LossChart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// Each floor as a dotted grey line across every epoch, in the legend.
fn draw_floors(chart: &mut LossChart, floors: &[Floor], epochs: usize) -> Result<()> {
    for floor in floors.iter().filter(|f| f.loss.is_finite()) {
        let grey = RGBColor(110, 110, 110);
        let line = vec![(1.0, floor.loss), (epochs as f64, floor.loss)];
        chart
            .draw_series(DashedLineSeries::new(line, 2, 4, grey.stroke_width(2)))
            .map_err(|e| anyhow!("{e}"))?
            .label(floor.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], grey.stroke_width(2))
            });
    }
    Ok(())
}

/// Each band as a pale shape in its curve's colour: the low edge left to right, the high edge back.
fn draw_bands(chart: &mut LossChart, bands: &[Band]) -> Result<()> {
    for band in bands.iter().filter(|b| b.points.len() > 1) {
        let outline: Vec<(f64, f64)> = band
            .points
            .iter()
            .map(|p| (p.0 as f64, p.1))
            .chain(band.points.iter().rev().map(|p| (p.0 as f64, p.2)))
            .collect();
        chart
            .draw_series(std::iter::once(Polygon::new(
                outline,
                colour(band.curve).mix(0.2).filled(),
            )))
            .map_err(|e| anyhow!("{e}"))?;
    }
    Ok(())
}

/// One stretch of a piano roll: tokens drawn in one colour under one legend label.
pub struct RollPart<'a> {
    pub tokens: &'a [String],
    pub label: String,
}

/// A piano roll: time across (seconds at `tempo`, µs per quarter note), pitch up, each onset's notes as bars as the generated MIDI file
/// plays them ([`crate::music::tokens::timeline`]: with time tokens their onsets and lengths, else `step` beats per
/// token; chords in the octave from C4), the parts one after another, each in its own colour.
pub fn piano_roll(title: &str, parts: &[RollPart], step: f64, tempo: u32) -> Result<String> {
    let seconds_per_beat = 60.0 / crate::artifact::bpm(tempo);
    // (part, start, length, pitch), in seconds.
    let mut notes: Vec<(usize, f64, f64, u8)> = Vec::new();
    let mut offset = 0.0;
    for (i, part) in parts.iter().enumerate() {
        let played = crate::music::tokens::timeline(part.tokens, step);
        let timed = part
            .tokens
            .iter()
            .any(|t| crate::music::tokens::time_token(t).is_some());
        for p in &played {
            for &pitch in &p.keys {
                notes.push((
                    i,
                    (offset + p.beat) * seconds_per_beat,
                    p.beats * seconds_per_beat,
                    pitch,
                ));
            }
        }
        // The next part starts where this one ends: after its last note, or one step per token.
        offset += if timed {
            played.iter().map(|p| p.beat + p.beats).fold(0.0, f64::max)
        } else {
            part.tokens.len() as f64 * step
        };
    }
    let end = (offset * seconds_per_beat).max(step * seconds_per_beat);
    let lo = notes
        .iter()
        .map(|n| n.3)
        .min()
        .unwrap_or(60)
        .saturating_sub(2);
    let hi = notes
        .iter()
        .map(|n| n.3)
        .max()
        .unwrap_or(72)
        .saturating_add(3)
        .min(128);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 380)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(48)
            .build_cartesian_2d(0f64..end, f64::from(lo)..f64::from(hi))
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(usize::from(hi - lo))
            .y_label_formatter(&|y| {
                let pitch = y.round() as u8;
                if y.fract() == 0.0 && pitch.is_multiple_of(12) {
                    crate::music::tokens::pitch_name(pitch)
                } else {
                    String::new()
                }
            })
            .x_label_formatter(&|x| format!("{x:.0}"))
            .x_desc("seconds")
            .y_desc("pitch")
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        for (i, part) in parts.iter().enumerate() {
            let c = colour(i);
            let bars = notes.iter().filter(|n| n.0 == i).map(|&(_, t, len, p)| {
                Rectangle::new(
                    [(t, f64::from(p)), (t + len * 0.92, f64::from(p) + 0.9)],
                    c.filled(),
                )
            });
            chart
                .draw_series(bars)
                .map_err(|e| anyhow!("{e}"))?
                .label(part.label.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], c.filled()));
        }
        finish(&mut chart, &root)?;
    }
    Ok(svg)
}
