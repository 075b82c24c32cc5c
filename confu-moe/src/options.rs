//! `confu.json`: every ConFu choice the paper leaves open (METHOD.md `[choice]`s) as a named
//! option, with the defaults of METHOD.md. Unknown keys and out-of-range values are refused with
//! the file, the field and the value named.

use std::path::Path;

use confu_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// Which target layers form the future vector `f` at a `[con]` row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FutureLayers {
    /// The 3-layer concatenation of the EAGLE-3 features (`3d`), projected by the head's `fc`.
    Eagle3Taps,
    /// The last decoder layer's output (`d`), fed to the head without `fc` (as the head's own
    /// states are in deeper drafting steps).
    LastLayer,
}

/// Where a `[con]` row attached to a row at position `p` sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConPosition {
    /// `p + 1`, the position of the token it contemplates.
    NodePlusOne,
    /// `p`, the position of the row it is attached to.
    Node,
}

/// How often the MoEs route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    /// One decision per round, on the last accepted token, shared by every `[con]` row.
    OncePerRound,
}

/// Which tree nodes get a `[con]` row in verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContemplateNodes {
    /// Every node (the paper).
    All,
    /// The root and the `M` highest-scoring other nodes; a node without one uses the `f` of its
    /// nearest covered ancestor (ours: halves the extra rows' cost on CPUs).
    Top(usize),
}

impl ContemplateNodes {
    /// Parse `all` or `top:M`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "all" => Some(Self::All),
            _ => s
                .strip_prefix("top:")
                .and_then(|m| m.parse().ok())
                .map(Self::Top),
        }
    }
}

impl std::fmt::Display for ContemplateNodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::All => write!(f, "all"),
            Self::Top(m) => write!(f, "top:{m}"),
        }
    }
}

impl Serialize for ContemplateNodes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ContemplateNodes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("`{s}` is neither `all` nor `top:M`")))
    }
}

/// Every ConFu option.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfuOptions {
    /// Rows `s` of the soft prompt.
    pub soft_prompt_len: usize,
    /// Experts per MoE; 1 is the static contemplate token.
    pub n_expert: usize,
    /// Experts kept per routing decision.
    pub top_k_expert: usize,
    /// Renormalise the kept weights to sum 1.
    pub renormalize: bool,
    pub future_layers: FutureLayers,
    pub con_position: ConPosition,
    /// The tree root gets a `[con]` row (needed when no draft token is accepted).
    pub root_contemplate: bool,
    pub routing: Routing,
    pub contemplate_nodes: ContemplateNodes,
    /// Ours, beyond the paper (off: the paper's slot): a learned per-head gain on the future
    /// slot's key and value (`slot_gain.*` in `confu.safetensors`), see [`crate::SlotGain`].
    #[serde(skip_serializing_if = "is_false")]
    pub future_slot_gain: bool,
}

fn is_false(b: &bool) -> bool {
    !b
}

impl Default for ConfuOptions {
    fn default() -> Self {
        Self {
            soft_prompt_len: 16,
            n_expert: 8,
            top_k_expert: 2,
            renormalize: true,
            future_layers: FutureLayers::Eagle3Taps,
            con_position: ConPosition::NodePlusOne,
            root_contemplate: true,
            routing: Routing::OncePerRound,
            contemplate_nodes: ContemplateNodes::All,
            future_slot_gain: false,
        }
    }
}

impl ConfuOptions {
    /// Read and validate `confu.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let de = &mut serde_json::Deserializer::from_str(&text);
        let o: Self = serde_path_to_error::deserialize(de).map_err(|e| Error::Format {
            path: path.to_path_buf(),
            msg: format!("{}: {}", e.path(), e.inner()),
        })?;
        o.validate().map_err(|(field, msg)| Error::Config {
            path: path.to_path_buf(),
            field: field.into(),
            msg,
        })?;
        Ok(o)
    }

    /// Check the ranges; the error names the field.
    pub fn validate(&self) -> std::result::Result<(), (&'static str, String)> {
        if self.soft_prompt_len == 0 {
            return Err(("soft_prompt_len", "must be >= 1".into()));
        }
        if self.n_expert == 0 {
            return Err(("n_expert", "must be >= 1 (1 is the static variant)".into()));
        }
        if self.top_k_expert == 0 || self.top_k_expert > self.n_expert {
            return Err((
                "top_k_expert",
                format!(
                    "{} must be in 1..={} (n_expert)",
                    self.top_k_expert, self.n_expert
                ),
            ));
        }
        if !self.root_contemplate {
            return Err((
                "root_contemplate",
                "false is not supported: without a [con] on the root a round that accepts no \
                 draft has no future vector"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Position of a `[con]` row attached to a row at `position`.
    pub fn con_position(&self, position: usize) -> usize {
        match self.con_position {
            ConPosition::NodePlusOne => position + 1,
            ConPosition::Node => position,
        }
    }

    /// The target taps that form `f` at a `[con]` row.
    pub fn future_taps(&self, num_layers: usize) -> Vec<confu_model::Tap> {
        match self.future_layers {
            FutureLayers::Eagle3Taps => confu_model::feature_taps(num_layers),
            FutureLayers::LastLayer => vec![confu_model::Tap::LayerInput(num_layers)],
        }
    }

    /// The options as `confu.json` text.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> std::result::Result<ConfuOptions, String> {
        let dir =
            std::env::temp_dir().join(format!("confu-opt-{}-{}", std::process::id(), text.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("confu.json");
        std::fs::write(&p, text).unwrap();
        let r = ConfuOptions::from_file(&p).map_err(|e| e.to_string());
        std::fs::remove_dir_all(&dir).unwrap();
        r
    }

    #[test]
    fn defaults_round_trip_and_bad_values_name_the_field() {
        let d = ConfuOptions::default();
        assert_eq!(parse(&d.to_json()).unwrap(), d);
        let o =
            parse(r#"{"n_expert": 1, "top_k_expert": 1, "contemplate_nodes": "top:4"}"#).unwrap();
        assert_eq!(
            (o.n_expert, o.contemplate_nodes),
            (1, ContemplateNodes::Top(4))
        );
        let e = parse(r#"{"n_expert": 2, "top_k_expert": 3}"#).unwrap_err();
        assert!(e.contains("top_k_expert") && e.contains("3"), "{e}");
        let e = parse(r#"{"n_experts": 2}"#).unwrap_err();
        assert!(e.contains("n_experts"), "{e}");
        let e = parse(r#"{"con_position": "before"}"#).unwrap_err();
        assert!(e.contains("before"), "{e}");
        let e = parse(r#"{"contemplate_nodes": "some"}"#).unwrap_err();
        assert!(e.contains("some"), "{e}");
    }
}
