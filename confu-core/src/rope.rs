//! Rotary position embeddings: inverse frequencies (default, linear, llama3 scaling) and the
//! per-row cos/sin tables for explicit position ids.
//!
//! Frequencies are computed in `f32` step by step as Hugging Face transformers does, so that our
//! logits match theirs to float rounding; positions are explicit because ConFu gives contemplate
//! rows and tree nodes positions that are not `0..n`.

use serde::{Deserialize, Serialize};

/// How the base inverse frequencies are rescaled for long contexts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub enum RopeScaling {
    /// `inv_freq[i] = theta^(-2i/d)`.
    #[default]
    None,
    /// Positions divided by `factor`.
    Linear { factor: f32 },
    /// Llama-3.1's frequency-band rescaling.
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_max_position_embeddings: usize,
    },
}

/// Everything RoPE needs: the rotated width (`head_dim`), the base and the scaling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RopeConfig {
    pub head_dim: usize,
    pub theta: f32,
    pub scaling: RopeScaling,
}

impl RopeConfig {
    /// The `head_dim / 2` inverse frequencies.
    pub fn inv_freq(&self) -> Vec<f32> {
        let d = self.head_dim;
        let base: Vec<f32> = (0..d)
            .step_by(2)
            .map(|i| 1.0 / self.theta.powf(i as f32 / d as f32))
            .collect();
        match &self.scaling {
            RopeScaling::None => base,
            RopeScaling::Linear { factor } => base.iter().map(|f| f / factor).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                let old = *original_max_position_embeddings as f32;
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                base.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f32::consts::PI / f;
                        let scaled = if wavelen > low_wavelen { f / factor } else { f };
                        let medium = wavelen >= high_wavelen && wavelen <= low_wavelen;
                        if medium {
                            let smooth = (old / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * scaled / factor + smooth * scaled
                        } else {
                            scaled
                        }
                    })
                    .collect()
            }
        }
    }

    /// Row-major `[positions.len(), head_dim]` cos and sin tables, the half-width frequencies
    /// repeated twice (the rotate-half convention of HF Llama/Qwen).
    pub fn cos_sin(&self, inv_freq: &[f32], positions: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let d = self.head_dim;
        let mut cos = Vec::with_capacity(positions.len() * d);
        let mut sin = Vec::with_capacity(positions.len() * d);
        for &p in positions {
            let start = cos.len();
            for &f in inv_freq {
                // The product is formed in f32 (as transformers does), the cosine in f64.
                let angle = (p as f32 * f) as f64;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
            cos.extend_from_within(start..start + d / 2);
            sin.extend_from_within(start..start + d / 2);
        }
        (cos, sin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_frequencies_follow_theta_powers() {
        let rope = RopeConfig {
            head_dim: 4,
            theta: 10000.0,
            scaling: RopeScaling::None,
        };
        let f = rope.inv_freq();
        assert_eq!(f.len(), 2);
        assert!((f[0] - 1.0).abs() < 1e-7);
        assert!((f[1] - 0.01).abs() < 1e-7);
    }

    #[test]
    fn llama3_scaling_divides_low_frequencies_and_keeps_high_ones() {
        let rope = RopeConfig {
            head_dim: 16,
            theta: 500000.0,
            scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 32,
            },
        };
        let plain = RopeConfig {
            scaling: RopeScaling::None,
            ..rope.clone()
        };
        let (s, p) = (rope.inv_freq(), plain.inv_freq());
        // Highest frequency: wavelength 2π < 32/4, untouched.
        assert_eq!(s[0], p[0]);
        // Lowest frequency: wavelength far above 32, divided by the factor.
        assert!((s[7] - p[7] / 8.0).abs() <= f32::EPSILON * p[7]);
    }

    #[test]
    fn cos_sin_repeat_the_half_width() {
        let rope = RopeConfig {
            head_dim: 4,
            theta: 10000.0,
            scaling: RopeScaling::None,
        };
        let (cos, sin) = rope.cos_sin(&rope.inv_freq(), &[0, 3]);
        assert_eq!(&cos[..4], &[1.0; 4]);
        assert_eq!(cos[4], cos[6]);
        assert!((sin[4] - 3f32.sin()).abs() < 1e-6);
    }
}
