//! The evaluation plot: τ per category, and the histogram of tokens added per round. Text is
//! drawn with a bundled DejaVu Sans Mono (`assets/`, Bitstream Vera licence) so that no system
//! fonts are needed.

use std::path::Path;

use confu::eval::EvalReport;
use confu_core::{Error, Result};
use plotters::prelude::*;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");

fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::io(
        path,
        std::io::Error::other(format!("drawing the plot failed: {e}")),
    )
}

/// Draw `report` to a PNG at `path` (written to a temporary file, then renamed).
pub fn plot_eval(report: &EvalReport, path: &Path) -> Result<()> {
    // Registering twice is harmless; the font is valid, so ignore the already-registered case.
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    let tmp = path.with_extension("tmp.png");
    draw(report, &tmp).map_err(|e| plot_err(path, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn draw(report: &EvalReport, path: &Path) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, (1100, 450)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(550);

    let mut bars: Vec<(String, f64)> = report
        .per_category
        .iter()
        .map(|(c, s)| (c.clone(), s.tau))
        .collect();
    bars.push(("overall".into(), report.overall.tau));
    let top = bars.iter().map(|b| b.1).fold(1.0, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(&left)
        .caption("tau (tokens per target forward)", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..bars.len() as f64, 0f64..top)?;
    let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bars.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.26 {
                labels.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
        Rectangle::new(
            [(i as f64 + 0.15, 0.0), (i as f64 + 0.85, *v)],
            BLUE.mix(0.7).filled(),
        )
    }))?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
        Text::new(
            format!("{v:.2}"),
            (i as f64 + 0.3, *v + top * 0.02),
            ("sans-serif", 15),
        )
    }))?;

    let hist = report.acceptance_histogram();
    let hmax = hist.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.15;
    let mut chart = ChartBuilder::on(&right)
        .caption(
            "tokens added per round (accepted + bonus)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.5f64..hist.len() as f64 + 0.5, 0f64..hmax)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc("rounds")
        .x_labels(hist.len().min(12))
        .x_label_formatter(&|x| format!("{}", x.round() as i64))
        .draw()?;
    chart.draw_series(hist.iter().enumerate().map(|(a, &n)| {
        let x = a as f64 + 1.0;
        Rectangle::new(
            [(x - 0.35, 0.0), (x + 0.35, n as f64)],
            RED.mix(0.6).filled(),
        )
    }))?;
    root.present()?;
    Ok(())
}

/// Draw the training loss per step to a PNG at `path`.
pub fn plot_loss(steps: &[(usize, f32, f64)], path: &Path) -> Result<()> {
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    let tmp = path.with_extension("tmp.png");
    draw_loss(steps, &tmp).map_err(|e| plot_err(path, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
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
