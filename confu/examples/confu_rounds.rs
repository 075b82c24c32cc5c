//! ConFu rounds by hand, from the public parts: the soft prompt and contemplate rows
//! (`Contemplator`), the future-slot draft head (`Eagle3Drafter`), the two MoE routers, one
//! verification pass (`score`), greedy acceptance and cache compaction.
//!
//! `cargo run -p confu --example confu_rounds [TARGET_DIR CONFU_DRAFT_DIR]` (default: the fixtures).

use backend_cpu::Cpu;
use burn::tensor::Tensor;
use confu::ConfuHead;
use confu_core::{sampling::argmax, KvCache, ToHost};
use confu_draft::{Eagle3Drafter, TreeSettings};
use confu_model::{feature_taps, LogitRows, ModelInput, TargetModel};
use confu_verify::{compact_to_path, future_source, greedy_accept, score};

fn main() -> confu_core::Result<()> {
    let fixtures = confu::reference::fixture_roots()[0].clone();
    let mut args = std::env::args().skip(1).map(std::path::PathBuf::from);
    let target_dir = args.next().unwrap_or(fixtures.join("hf/llama3-tiny"));
    let draft_dir = args
        .next()
        .unwrap_or(fixtures.join("confu/llama3-tiny/draft"));
    let target = TargetModel::<Cpu>::load(&target_dir, backend_cpu::ops(), &Default::default())?;
    let confu = ConfuHead::load(&draft_dir, &target)?;
    let (con, ops) = (&confu.contemplator, target.ops().clone());
    let (opts, tree) = (&con.options, TreeSettings::default());
    let prompt: Vec<u32> = vec![465, 317, 443, 397, 440, 442, 375, 267, 452, 388, 13];
    let taps = feature_taps(target.config().num_hidden_layers);

    // Prefill: soft prompt K/V in the reserved region, the prompt rows, then one [con] row.
    let mut cache = target.new_cache(con.reserved(), 256);
    con.install(&mut cache)?;
    let out = target.forward_causal(&mut cache, &prompt, LogitRows::Last, &taps)?;
    let mut root = argmax(&out.logits.unwrap().to_host()) as u32;
    let mut features = Tensor::cat(out.taps, 1);
    let mut path: Vec<usize> = (0..prompt.len()).collect();
    let mut next: Vec<u32> = prompt[1..].iter().copied().chain([root]).collect();
    let mut anchor = features.clone().narrow(0, prompt.len() - 1, 1);
    let mut f = con.prefill_future(&target, &mut cache, anchor.clone())?.f;
    let mut drafter = Eagle3Drafter::with_future_slot(confu.head.clone(), ops.clone(), 512);
    let mut output: Vec<u32> = Vec::new();

    for round in 0..8 {
        // Draft: future MoE on fc(anchor), the future slot, the round's real rows, the tree.
        let fused = confu.head.fuse(ops.as_ref(), anchor.clone());
        let (k, renorm) = (opts.top_k_expert, opts.renormalize);
        let (e_f, _) = con.params.future.route(fused, k, renorm, ops.as_ref());
        let gain = con.params.slot_gain.as_ref();
        drafter.set_future_slot(e_f, f.clone(), drafter.len() + path.len(), gain)?;
        let idx = confu_core::index_tensor(&path, target.device());
        drafter.extend(features.clone().select(0, idx), &next)?;
        let t = drafter.draft_tree(root, tree)?;

        // Verify: nodes + one [con] per covered node, the contemplate MoE routed once.
        let (c, route_c) = con.embedding(anchor.clone(), ops.as_ref());
        let covered = con.covered_nodes(&t, drafter.node_scores());
        let layout = con.layout(&cache, &t, &covered)?;
        let inputs = con.inputs(&target, &t, c, covered.len())?;
        let input = ModelInput::Embeds(inputs);
        let s = score(&target, &mut cache, &layout, input, &taps)?;

        // Accept, compact (drops every [con] row), hand over f and the anchor.
        let argmaxes: Vec<u32> = s.logits.iter().map(|l| argmax(l) as u32).collect();
        let acc = greedy_accept(&t, &argmaxes);
        compact_to_path(&mut cache, s.prefix_len, &acc.path)?;
        features = s.features.expect("taps requested");
        let q = *acc.path.last().unwrap();
        f = features
            .clone()
            .narrow(0, t.len() + future_source(&t, &covered, q), 1);
        anchor = features.clone().narrow(0, q, 1);
        let accepted: Vec<u32> = acc.path.iter().map(|&n| t.tokens[n]).collect();
        let rows = (t.len(), covered.len(), &route_c.experts);
        println!("round {round}: (nodes, [con] rows, experts) {rows:?}, accepted {accepted:?}");
        output.extend(&accepted);
        next = accepted[1..].iter().copied().chain([acc.bonus]).collect();
        path = acc.path;
        root = acc.bonus;
    }
    println!(
        "{} tokens; target cache: {} rows",
        output.len(),
        cache.len()
    );
    Ok(())
}
