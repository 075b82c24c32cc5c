//! Progress of long work (training steps, generated sequences) on standard error.

use std::time::Instant;

/// Progress bar of a training run: loss, learning rate, tokens/s, ETA. When stderr is not a
/// terminal (a log file, CI) the bar is hidden, so a plain line is printed every 30 s instead.
pub struct StepProgress {
    bar: indicatif::ProgressBar,
    started: Instant,
    first: Option<usize>,
    tokens_per_step: f64,
    last_line: Instant,
}

impl StepProgress {
    pub fn new(steps: usize, tokens_per_step: usize) -> Self {
        Self::counting(steps, tokens_per_step, "steps")
    }

    pub fn counting(steps: usize, tokens_per_step: usize, unit: &str) -> Self {
        let bar = indicatif::ProgressBar::new(steps as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{{bar:30}} {{pos}}/{{len}} {unit} | {{msg}} | {{elapsed}} elapsed, eta {{eta}}"
            ))
            .expect("valid template"),
        );
        Self {
            bar,
            started: Instant::now(),
            first: None,
            tokens_per_step: tokens_per_step as f64,
            last_line: Instant::now(),
        }
    }

    pub fn update(
        &mut self,
        step: usize,
        loss: Option<f32>,
        lr: Option<f64>,
    ) -> confu_train::pretrain::Control {
        let first = *self.first.get_or_insert(step);
        let elapsed = self.started.elapsed().as_secs_f64();
        let done = (step + 1 - first) as f64;
        let rate = self.tokens_per_step * done / elapsed;
        self.bar.set_position(step as u64 + 1);
        let mut msg = String::new();
        if let Some(l) = loss {
            msg += &format!("loss {l:.3} ");
        }
        if let Some(l) = lr {
            msg += &format!("lr {l:.2e} ");
        }
        msg += &format!("{rate:.0} tok/s");
        let len = self.bar.length().unwrap_or(0);
        if self.bar.is_hidden()
            && (self.last_line.elapsed().as_secs() >= 30 || step as u64 + 1 == len)
        {
            let left = len.saturating_sub(step as u64 + 1) as f64 * elapsed / done;
            eprintln!(
                "{}/{len} | {msg} | {:.0} s elapsed, eta {:.0} s",
                step + 1,
                elapsed,
                left
            );
            self.last_line = Instant::now();
        }
        self.bar.set_message(msg);
        confu_train::pretrain::Control::Continue
    }

    pub fn finish(&self) {
        self.bar.finish();
    }
}
