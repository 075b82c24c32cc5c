//! The policy's choices under hand-set costs, and the cut trees against EAGLE-2's budgets.

use super::*;
use crate::tree::build_scored_tree;

/// A drafted tree with pseudo-random draft distributions over 12 tokens.
fn drafted(settings: TreeSettings) -> (DraftTree, Vec<f32>) {
    let logp = |seed: usize| -> Vec<f32> {
        let raw: Vec<f32> = (0..12)
            .map(|i| (((seed * 31 + i * 17) % 23) as f32) / 4.0)
            .collect();
        crate::tree::log_softmax(&raw)
    };
    build_scored_tree(
        0,
        &logp(1),
        settings,
        |i| i as u32,
        |step, frontier| {
            Ok((0..frontier.len())
                .map(|slot| logp(step * 7 + slot * 3 + frontier[slot].token as usize + 2))
                .collect())
        },
    )
    .unwrap()
}

#[test]
fn a_cut_tree_is_the_tree_eagle_builds_with_that_budget() {
    let big = TreeSettings {
        total_tokens: 40,
        depth: 3,
        top_k: 4,
    };
    let (tree, scores) = drafted(big);
    let order = score_order(&tree, &scores);
    for n in 1..=tree.len() {
        let (cut, cut_scores) = top_nodes(&tree, &scores, &order[..n - 1]);
        let (want, want_scores) = drafted(TreeSettings {
            total_tokens: n,
            ..big
        });
        assert_eq!(cut, want, "n = {n}");
        assert_eq!(cut_scores, want_scores, "n = {n}");
    }
}

fn policy(verify: Vec<(usize, f64)>, draft_per_forward: f64) -> AutoTree {
    let options = AutoTreeOptions {
        max: TreeSettings {
            total_tokens: 32,
            depth: 4,
            top_k: 4,
        },
        ..AutoTreeOptions::default()
    };
    let mut costs = CostModel::new(verify, 5, 1.0);
    for f in 1..=5 {
        costs.observe(f, 0, draft_per_forward * f as f64, 0.0, 0.0);
    }
    AutoTree::new(options, costs)
}

fn chain_rows(n: usize) -> usize {
    n
}

#[test]
fn plain_decoding_when_every_row_costs_a_step() {
    // A row costs as much as a vanilla step; the best child is taken 60 % of the time.
    let mut p = policy(vec![(1, 1.0), (2, 2.0)], 0.3);
    let first = p.plan(100, &chain_rows, 0);
    assert_eq!(
        first.depth, 4,
        "with nothing known the deepest tree is drafted"
    );
    let (tree, scores) = drafted(first);
    let (cut, _, choice) = p.choose(&tree, &scores, first.depth + 1, &chain_rows);
    assert_eq!((cut.len(), choice.nodes, choice.rows), (1, 1, 1));
    assert_eq!(choice.predicted_tokens, 1.0);
    // Plain rounds, with probes of the best tree (one level, 0.3 s of drafting) 30, 30, 32,
    // then 64 rounds apart: the first waits are set by the 1 % share (0.3 s of probe per
    // 30 s of plain rounds), the later ones by the wait that doubles as each probe finds
    // nothing worth verifying.
    let mut probes = Vec::new();
    for round in 2..=160 {
        let plan = p.plan(100, &chain_rows, 0);
        if plan.total_tokens > 1 {
            probes.push(round);
            let (tree, scores) = drafted(plan);
            let (_, _, choice) = p.choose(&tree, &scores, plan.depth + 1, &chain_rows);
            assert_eq!(choice.nodes, 1);
        }
    }
    assert_eq!(
        probes,
        vec![31, 61, 93, 157],
        "probes 30, 30, 32, 64 rounds apart"
    );
}

#[test]
fn probes_wait_until_the_catch_up_is_a_small_share_of_the_plain_time() {
    // A plain round costs 1 s; the head's catch-up is assumed at 0.05 s per deferred
    // position and the probe drafts one level (0.3 s), so with 100 deferred positions a
    // probe costs 5.3 s: 530 plain rounds at a 1 % share.
    let mut p = policy(vec![(1, 1.0), (2, 2.0)], 0.3);
    let first = p.plan(100, &chain_rows, 0);
    let (tree, scores) = drafted(first);
    p.choose(&tree, &scores, first.depth + 1, &chain_rows);
    let mut probes = Vec::new();
    for round in 2..=1100 {
        let plan = p.plan(100, &chain_rows, 100);
        if plan.total_tokens > 1 {
            probes.push(round);
            let (tree, scores) = drafted(plan);
            p.choose(&tree, &scores, plan.depth + 1, &chain_rows);
        }
    }
    assert_eq!(probes, vec![531, 1061], "a probe every 530 plain rounds");
    // A measured catch-up replaces the prior.
    p.observe_catch_up(100, 1.0);
    assert!((p.costs().catch_up(100) - 1.0).abs() < 1e-12);
}

#[test]
fn large_trees_when_verification_is_flat() {
    // Verifying 64 rows costs what one does; drafting is cheap.
    let mut p = policy(vec![(1, 1.0), (64, 1.0)], 0.01);
    let (tree, scores) = drafted(p.plan(100, &chain_rows, 0));
    let (cut, _, choice) = p.choose(&tree, &scores, 5, &chain_rows);
    assert_eq!(cut.len(), tree.len(), "every node is free to verify");
    assert_eq!(choice.nodes, tree.len());
    assert_eq!(choice.levels, 5);
    let expected = 1.0 + p.stats().expected_accepted(&tree);
    assert!((choice.predicted_tokens - expected).abs() < 1e-9);
    assert!(p.plan(100, &chain_rows, 0).depth >= 3);
}

#[test]
fn the_node_count_trades_acceptance_against_verification_time() {
    // Each row past the first costs a tenth of a step: a node is worth it when it is reached
    // more than a tenth of the time (at the best rate, about one token per step).
    let mut p = policy(vec![(1, 1.0), (2, 1.1), (64, 7.3)], 0.0);
    let (tree, scores) = drafted(p.plan(100, &chain_rows, 0));
    let (cut, _, _) = p.choose(&tree, &scores, 5, &chain_rows);
    let reach = p.stats().reach(&cut);
    assert!(
        cut.len() > 1 && cut.len() < tree.len(),
        "{} of {}",
        cut.len(),
        tree.len()
    );
    assert!(reach.iter().skip(1).all(|&r| r > 0.05), "{reach:?}");
}
