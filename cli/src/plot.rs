//! The evaluation plot: τ per category, and the histogram of tokens added per round. Text is
//! drawn with a bundled DejaVu Sans Mono (`assets/`, Bitstream Vera licence) so that no system
//! fonts are needed.

use std::path::Path;

use confu::eval::Comparison;
use confu_core::{Error, Result};
use plotters::prelude::*;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");

fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::io(
        path,
        std::io::Error::other(format!("drawing the plot failed: {e}")),
    )
}

/// Draw `report` (one or more drafters, side by side) to a PNG at `path` (written to a temporary
/// file, then renamed).
pub fn plot_eval(report: &Comparison, path: &Path) -> Result<()> {
    // Registering twice is harmless; the font is valid, so ignore the already-registered case.
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    write_png(path, |tmp| draw(report, tmp))
}

/// Draw into a temporary sibling and rename it over `path` (never over a link, folder, FIFO or
/// device); the temporary file is removed on every error.
fn write_png(
    path: &Path,
    draw: impl FnOnce(&Path) -> std::result::Result<(), Box<dyn std::error::Error>>,
) -> Result<()> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| !m.file_type().is_file()) {
        return Err(Error::io(
            path,
            std::io::Error::other("exists and is not a regular file; it is left as it is"),
        ));
    }
    // plotters picks the image format from the extension: keep `.png` last.
    let tmp = path.with_extension("tmp.png");
    let result = draw(&tmp)
        .map_err(|e| plot_err(path, e))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

const COLORS: [RGBColor; 4] = [BLUE, RED, GREEN, MAGENTA];

fn draw(report: &Comparison, path: &Path) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, (1100, 450)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(550);
    let n = report.drafters.len().max(1);
    let width = 0.7 / n as f64;
    let color = |d: usize| COLORS[d % COLORS.len()].mix(0.7);

    let first = &report.drafters[0].report;
    let mut labels: Vec<String> = first.per_category.keys().cloned().collect();
    labels.push("overall".into());
    let tau = |d: usize, c: &str| report.drafters[d].report.summary(c).map_or(0.0, |s| s.tau);
    let top = (0..n)
        .flat_map(|d| labels.iter().map(move |c| tau(d, c)))
        .fold(1.0, f64::max)
        * 1.25;
    let mut chart = ChartBuilder::on(&left)
        .caption("tau (tokens per target forward)", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..labels.len() as f64, 0f64..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(labels.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.26 {
                labels.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .draw()?;
    for d in 0..n {
        let name = report.drafters[d].name.clone();
        chart
            .draw_series(labels.iter().enumerate().map(|(i, c)| {
                let x = i as f64 + 0.15 + d as f64 * width;
                Rectangle::new([(x, 0.0), (x + width, tau(d, c))], color(d).filled())
            }))?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color(d).filled()));
        chart.draw_series(labels.iter().enumerate().map(|(i, c)| {
            let v = tau(d, c);
            let x = i as f64 + 0.15 + d as f64 * width;
            Text::new(format!("{v:.2}"), (x, v + top * 0.02), ("sans-serif", 12))
        }))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .label_font(("sans-serif", 13))
        .draw()?;

    let hists: Vec<Vec<usize>> = report
        .drafters
        .iter()
        .map(|d| d.report.acceptance_histogram())
        .collect();
    let len = hists.iter().map(Vec::len).max().unwrap_or(1);
    let hmax = hists.iter().flatten().copied().max().unwrap_or(1).max(1) as f64 * 1.15;
    let mut chart = ChartBuilder::on(&right)
        .caption(
            "tokens added per round (accepted + bonus)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.5f64..len as f64 + 0.5, 0f64..hmax)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc("rounds")
        .x_labels(len.min(12))
        .x_label_formatter(&|x| format!("{}", x.round() as i64))
        .draw()?;
    for (d, hist) in hists.iter().enumerate() {
        chart.draw_series(hist.iter().enumerate().map(|(a, &count)| {
            let x = a as f64 + 0.65 + d as f64 * width;
            Rectangle::new([(x, 0.0), (x + width, count as f64)], color(d).filled())
        }))?;
    }
    root.present()?;
    Ok(())
}

/// Draw the training loss per step to a PNG at `path`.
pub fn plot_loss(steps: &[(usize, f32, f64)], path: &Path) -> Result<()> {
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    write_png(path, |tmp| draw_loss(steps, tmp))
}

fn draw_loss(
    steps: &[(usize, f32, f64)],
    path: &Path,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, (800, 450)).into_drawing_area();
    root.fill(&WHITE)?;
    let last = steps.last().map_or(1, |s| s.0 + 1) as f64;
    let top = steps.iter().map(|s| s.1 as f64).fold(0.1, f64::max) * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption("training loss", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..last, 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("cross-entropy")
        .draw()?;
    chart.draw_series(LineSeries::new(
        steps.iter().map(|s| (s.0 as f64, s.1 as f64)),
        &BLUE,
    ))?;
    root.present()?;
    Ok(())
}
